// Loading a policy document: size limit, YAML/JSON parse, schema pass, semantic validation,
// preset expansion. Malformed input of any kind ends as located diagnostics, never an exception.
#include "openshell/policy/loader.hpp"

#include <yaml-cpp/yaml.h>

#include <exception>
#include <fstream>
#include <string>
#include <string_view>

#include "schema.hpp"

namespace openshell::policy {

namespace {

// Policies are a few KiB; anything past this is a mistake or an attack on the parser.
constexpr size_t kMaxPolicyBytes = size_t{4} << 20;

}  // namespace

namespace detail {

SourceLocation Locator::find(std::string path) const {
  for (;;) {
    if (auto it = where_.find(path); it != where_.end()) return it->second;
    const size_t cut = path.find_last_of(".[");
    if (cut == std::string::npos || cut == 0) break;
    path.resize(cut);
  }
  if (auto it = where_.find(path); it != where_.end()) return it->second;
  return {};
}

std::string child(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string element(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

std::string endpoint_path(const std::string& policy_key, size_t index) {
  return element("network_policies." + policy_key + ".endpoints", index);
}

}  // namespace detail

LoadResult load_policy(std::string_view text) {
  LoadResult result;
  if (text.size() > kMaxPolicyBytes) {
    result.diagnostics.push_back(
        Diagnostic{Severity::kError,
                   "",
                   {},
                   "policy document is larger than " + std::to_string(kMaxPolicyBytes) + " bytes"});
    return result;
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    SourceLocation where;
    if (!e.mark.is_null()) where = SourceLocation{e.mark.line + 1, e.mark.column + 1};
    result.diagnostics.push_back(
        Diagnostic{Severity::kError, "", where, "malformed YAML/JSON: " + e.msg});
    return result;
  } catch (const std::exception& e) {
    result.diagnostics.push_back(
        Diagnostic{Severity::kError, "", {}, std::string("malformed YAML/JSON: ") + e.what()});
    return result;
  }

  detail::Locator locator;
  PolicyDocument document;
  try {
    detail::read_document(root, document, locator, result.diagnostics);
  } catch (const std::exception& e) {
    // yaml-cpp throws on some malformed node shapes; never let that escape as a crash.
    result.diagnostics.push_back(
        Diagnostic{Severity::kError, "", {}, std::string("malformed policy: ") + e.what()});
    return result;
  }
  if (has_errors(result.diagnostics)) return result;

  detail::DiagnosticSink sink(locator);
  detail::validate_document(document, sink);
  for (auto& d : sink.diagnostics())
    result.diagnostics.push_back(std::move(d));
  if (has_errors(result.diagnostics)) return result;

  detail::expand_presets(document);
  result.document = std::move(document);
  return result;
}

LoadResult load_policy_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.diagnostics.push_back(
        Diagnostic{Severity::kError, "", {}, "cannot read " + file.string()});
    return result;
  }
  std::string text;
  char buffer[16384];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxPolicyBytes) break;  // load_policy reports the size error
  }
  return load_policy(text);
}

}  // namespace openshell::policy
