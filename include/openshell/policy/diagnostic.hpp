// Validation diagnostics: every error and warning carries its document path and line:column.
#pragma once

#include <string>
#include <vector>

namespace openshell::policy {

struct SourceLocation {
  int line = 0;    // 1-based; 0 when unknown (e.g. a document built in code)
  int column = 0;  // 1-based
};

enum class Severity { kError, kWarning };

struct Diagnostic {
  Severity severity = Severity::kError;
  std::string path;  // e.g. "network_policies.github.endpoints[0].rules"
  SourceLocation location;
  std::string message;

  // "path: message (line L, column C)"; used by logs and the control plane.
  std::string to_string() const;
};

bool has_errors(const std::vector<Diagnostic>& diagnostics);

}  // namespace openshell::policy
