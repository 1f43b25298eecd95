// The reference's load-time validation cases (spec vectors/policy-validation-cases.jsonl).
#include <catch2/catch.hpp>

#include "openshell/policy/loader.hpp"
#include "test_data.hpp"

using namespace openshell::policy;

namespace {

bool any_contains(const std::vector<Diagnostic>& diagnostics, Severity severity,
                  const std::string& needle) {
  for (const auto& d : diagnostics) {
    if (d.severity == severity && d.to_string().find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string render(const std::vector<Diagnostic>& diagnostics) {
  std::string text;
  for (const auto& d : diagnostics) {
    text += (d.severity == Severity::kError ? "error: " : "warning: ") + d.to_string() + "\n";
  }
  return text;
}

}  // namespace

TEST_CASE("reference validation vectors") {
  const auto cases = openshell::test::read_jsonl(openshell::test::specs_dir() +
                                                 "/vectors/policy-validation-cases.jsonl");
  CHECK(cases.size() == 36);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    const LoadResult result = load_policy(c["policy_yaml"].get<std::string>());
    const auto& expect = c["expect"];
    INFO(name << "\n" << render(result.diagnostics));
    CHECK(result.ok() == expect["valid"].get<bool>());
    if (expect.contains("error_contains")) {
      CHECK(any_contains(result.diagnostics, Severity::kError, expect["error_contains"]));
    }
    if (expect.contains("warning_contains")) {
      CHECK(any_contains(result.diagnostics, Severity::kWarning, expect["warning_contains"]));
    }
    if (expect.contains("no_warning_contains")) {
      CHECK_FALSE(
          any_contains(result.diagnostics, Severity::kWarning, expect["no_warning_contains"]));
    }
    if (expect.value("no_warnings", false)) {
      CHECK(result.diagnostics.empty());
    }
  }
}
