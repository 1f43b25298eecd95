// Rendering of validation diagnostics.
#include "openshell/policy/diagnostic.hpp"

#include <algorithm>
#include <string>

namespace openshell::policy {

std::string Diagnostic::to_string() const {
  std::string text = path.empty() ? message : path + ": " + message;
  if (location.line > 0) {
    text += " (line " + std::to_string(location.line) + ", column " +
            std::to_string(location.column) + ")";
  }
  return text;
}

bool has_errors(const std::vector<Diagnostic>& diagnostics) {
  return std::any_of(diagnostics.begin(), diagnostics.end(),
                     [](const Diagnostic& d) { return d.severity == Severity::kError; });
}

}  // namespace openshell::policy
