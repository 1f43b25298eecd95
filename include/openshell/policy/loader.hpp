// Loading a policy document: parse (YAML or JSON, same parser) → validate → expand presets.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "openshell/policy/diagnostic.hpp"
#include "openshell/policy/document.hpp"

namespace openshell::policy {

struct LoadResult {
  // Set when the document has no errors (warnings allowed).
  std::optional<PolicyDocument> document;
  std::vector<Diagnostic> diagnostics;  // errors and warnings, document order

  bool ok() const { return document.has_value(); }
};

// Parses and validates `text`. Never throws; malformed input yields located errors.
LoadResult load_policy(std::string_view text);

// Reads `file` (bounded size) and loads it; an unreadable file is one error with no location.
LoadResult load_policy_file(const std::filesystem::path& file);

}  // namespace openshell::policy
