// Endpoint host patterns (spec §1.8): exact hosts compared lowercase, and label-wise DNS wildcards.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/policy/glob.hpp"

namespace openshell::policy {

// Validation message for a wildcard host (spec §1.7 wording), or nullopt when acceptable.
// Exact hosts (no '*') are always acceptable here.
std::optional<std::string> validate_host_pattern(std::string_view pattern);

// A compiled wildcard host pattern. Matching expects the host already ASCII-lowercased.
class HostPattern {
 public:
  static HostPattern compile(std::string_view pattern);
  bool matches(std::string_view lowercase_host) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Label {
    bool recursive = false;  // `**`: one or more labels
    Glob glob;               // single-label glob (dialect b): '*', '?', '[...]'
  };
  // Matches labels_[0, label_count) against all the labels of `host`.
  bool match_labels(size_t label_count, std::string_view host) const;
  std::string pattern_;
  std::vector<Label> labels_;
  // The trailing labels without wildcards, as ".example.com": a host must end with them, which
  // rejects most hosts with one compare. literal_labels_ counts them.
  std::string literal_tail_;
  size_t literal_labels_ = 0;
};

// ASCII lowercase, used for hosts everywhere.
std::string ascii_lowercase(std::string_view text);

}  // namespace openshell::policy
