// Private to the policy layer: what the schema pass hands to semantic validation.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "openshell/policy/diagnostic.hpp"
#include "openshell/policy/document.hpp"

namespace YAML {
class Node;
}  // namespace YAML

namespace openshell::policy::detail {

// Where each node of the document was written, keyed by its document path
// ("network_policies.github.endpoints[0].host").
class Locator {
 public:
  void record(const std::string& path, SourceLocation location) { where_.emplace(path, location); }
  // The location of `path`, or of its nearest recorded ancestor.
  SourceLocation find(std::string path) const;

 private:
  std::unordered_map<std::string, SourceLocation> where_;
};

// Collects diagnostics with locations.
class DiagnosticSink {
 public:
  explicit DiagnosticSink(const Locator& locator) : locator_(locator) {}
  void error(const std::string& path, std::string message) {
    add(Severity::kError, path, std::move(message));
  }
  void warning(const std::string& path, std::string message) {
    add(Severity::kWarning, path, std::move(message));
  }
  std::vector<Diagnostic>& diagnostics() { return diagnostics_; }

 private:
  void add(Severity severity, const std::string& path, std::string message) {
    diagnostics_.push_back(Diagnostic{severity, path, locator_.find(path), std::move(message)});
  }
  const Locator& locator_;
  std::vector<Diagnostic> diagnostics_;
};

// The schema pass: node tree → document, recording every node's location and reporting type,
// unknown-key and duplicate-key errors into `diagnostics`. May throw yaml-cpp exceptions.
void read_document(const YAML::Node& root, PolicyDocument& document, Locator& locator,
                   std::vector<Diagnostic>& diagnostics);
SourceLocation location_of(const YAML::Node& node);

// Semantic validation of a schema-valid document (spec §1.2–1.7). Reports into `sink`.
void validate_document(const PolicyDocument& document, DiagnosticSink& sink);

// Expands `access` presets into rules (spec §1.6). Run after validation succeeded.
void expand_presets(PolicyDocument& document);

// Path helpers shared by the loader and the validator.
std::string endpoint_path(const std::string& policy_key, size_t index);
std::string child(const std::string& parent, const std::string& key);
std::string element(const std::string& parent, size_t index);

}  // namespace openshell::policy::detail
