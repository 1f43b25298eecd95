// Table-driven decisions written from the spec (tests/data/decision-cases.jsonl; schema in
// tests/data/README.md): L4 and L7, allow/deny/audit, presets, deny rules, query matchers.
#include <catch2/catch.hpp>
#include <variant>

#include "openshell/policy/engine.hpp"
#include "openshell/policy/loader.hpp"
#include "test_data.hpp"

using namespace openshell::policy;
using nlohmann::json;

namespace {

std::vector<std::string> strings(const json& input, const char* key) {
  std::vector<std::string> out;
  if (input.contains(key)) {
    for (const auto& item : input[key])
      out.push_back(item.get<std::string>());
  }
  return out;
}

void check_reason(const json& expect, const std::string& reason) {
  if (expect.contains("reason_equals")) CHECK(reason == expect["reason_equals"].get<std::string>());
  if (!expect.contains("reason_contains")) return;
  const json& needles = expect["reason_contains"];
  if (needles.is_string()) {
    CHECK_THAT(reason, Catch::Contains(needles.get<std::string>()));
  } else {
    for (const auto& needle : needles)
      CHECK_THAT(reason, Catch::Contains(needle.get<std::string>()));
  }
}

void run_case(const json& c) {
  const LoadResult loaded = load_policy(c["policy_yaml"].get<std::string>());
  std::string diagnostics;
  for (const auto& d : loaded.diagnostics)
    diagnostics += d.to_string() + "\n";
  INFO(diagnostics);
  REQUIRE(loaded.ok());
  const auto engine = compile_policy(*loaded.document, 1);

  const json& input = c["input"];
  const std::string host = input["host"];
  const std::string binary = input.value("binary", "");
  const auto ancestors = strings(input, "ancestors");
  const auto cmdline = strings(input, "cmdline_paths");
  ProcessIdentity identity{binary, ancestors, cmdline};
  ConnectInput connection{host, input["port"].get<uint16_t>(),
                          input.contains("binary") ? &identity : nullptr};

  Decision decision;
  if (c["eval"] == "l4") {
    decision = engine->decide_connect(connection);
  } else {
    QueryParams query;
    if (input.contains("query")) {
      for (const auto& [key, values] : input["query"].items()) {
        for (const auto& v : values)
          query.emplace_back(key, v.get<std::string>());
      }
    }
    const std::string method = input["method"];
    const std::string path = input["path"];
    decision = engine->decide_request(connection, RequestInput{method, path, &query});
  }

  const json& expect = c["expect"];
  CHECK(std::string(action_name(decision.action)) == expect["action"].get<std::string>());
  if (expect.contains("matched_policy")) {
    if (expect["matched_policy"].is_null()) {
      CHECK(decision.matched_policy.empty());
    } else {
      CHECK(std::string(decision.matched_policy) == expect["matched_policy"].get<std::string>());
    }
  }
  check_reason(expect, decision.reason);
}

}  // namespace

TEST_CASE("decision cases written from the spec") {
  const auto cases = openshell::test::read_jsonl(openshell::test::source_root() +
                                                 "/tests/data/decision-cases.jsonl");
  CHECK(cases.size() >= 80);
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c["name"].get<std::string>()) {
      INFO(c.dump(2));
      run_case(c);
    }
  }
}
