// Loader: schema strictness, locations, JSON input, presets, and the compatibility corpus.
#include "openshell/policy/loader.hpp"

#include <catch2/catch.hpp>
#include <filesystem>

#include "test_data.hpp"

using namespace openshell::policy;

namespace {

const Diagnostic* find_diagnostic(const LoadResult& result, const std::string& needle) {
  for (const auto& d : result.diagnostics) {
    if (d.to_string().find(needle) != std::string::npos) return &d;
  }
  return nullptr;
}

std::string render(const LoadResult& result) {
  std::string text;
  for (const auto& d : result.diagnostics)
    text += d.to_string() + "\n";
  return text;
}

}  // namespace

TEST_CASE("a minimal document loads") {
  const auto result = load_policy("version: 1\n");
  REQUIRE(result.ok());
  CHECK(result.document->network_policies.empty());
  CHECK_FALSE(result.document->filesystem.has_value());
}

TEST_CASE("version is required and must be 1") {
  auto missing = load_policy("network_policies: {}\n");
  CHECK_FALSE(missing.ok());
  CHECK(find_diagnostic(missing, "missing field `version`") != nullptr);

  auto two = load_policy("version: 2\n");
  CHECK_FALSE(two.ok());
  CHECK(find_diagnostic(two, "unsupported policy version 2") != nullptr);

  auto text = load_policy("version: \"1\"\n");
  CHECK_FALSE(text.ok());
}

TEST_CASE("unknown keys are errors at every level, with their location") {
  const auto result = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  github:\n"
      "    endpoints:\n"
      "      - host: api.github.com\n"
      "        port: 443\n"
      "        hots: typo\n");
  REQUIRE_FALSE(result.ok());
  const Diagnostic* d = find_diagnostic(result, "unknown field `hots`");
  REQUIRE(d != nullptr);
  CHECK(d->path == "network_policies.github.endpoints[0].hots");
  CHECK(d->location.line == 7);
  CHECK(d->location.column == 9);
}

TEST_CASE("duplicate keys are errors (yaml-cpp would keep the first silently)") {
  const auto result = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  a:\n"
      "    endpoints: [{host: x.com, port: 443}]\n"
      "  a:\n"
      "    endpoints: [{host: y.com, port: 443}]\n");
  REQUIRE_FALSE(result.ok());
  const Diagnostic* d = find_diagnostic(result, "duplicate key 'a'");
  REQUIRE(d != nullptr);
  CHECK(d->location.line == 5);

  const auto inner = load_policy("version: 1\nversion: 1\n");
  CHECK_FALSE(inner.ok());
}

TEST_CASE("wrong types are located errors, never crashes") {
  const char* documents[] = {
      "version: 1\nnetwork_policies: [1, 2]\n",
      "version: 1\nnetwork_policies:\n  a: 3\n",
      "version: 1\nnetwork_policies:\n  a:\n    endpoints: {host: x}\n",
      "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: x.com, port: https}]\n",
      "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: x.com, port: 70000}]\n",
      "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: [x], port: 1}]\n",
      "version: 1\nfilesystem_policy:\n  include_workdir: yes\n",
      "version: 1\nlandlock:\n  compatibility: strict\n",
      "- just\n- a list\n",
      "version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - host: x.com\n        port: 1\n"
      "        protocol: rest\n        rules: [{allow: {method: GET, path: /x, query: [1]}}]\n",
      "{{{{",
      "version: 1\n\tbad: tab\n",
      "",
  };
  for (const char* text : documents) {
    INFO(text);
    const auto result = load_policy(text);
    CHECK_FALSE(result.ok());
    CHECK_FALSE(result.diagnostics.empty());
  }
}

TEST_CASE("JSON documents load through the same parser, with locations") {
  const auto good = load_policy(
      R"({"version": 1, "network_policies": {"gh": {"endpoints": [{"host": "api.github.com", "port": 443}], "binaries": [{"path": "/usr/bin/curl"}]}}})");
  REQUIRE(good.ok());
  CHECK(good.document->network_policies.at("gh").endpoints.at(0).ports ==
        std::vector<uint16_t>{443});

  const auto bad = load_policy("{\n  \"version\": 1,\n  \"bogus\": true\n}\n");
  REQUIRE_FALSE(bad.ok());
  const Diagnostic* d = find_diagnostic(bad, "unknown field `bogus`");
  REQUIRE(d != nullptr);
  CHECK(d->location.line == 3);
}

TEST_CASE("ports wins over port; name defaults to the key") {
  const auto result = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  web:\n"
      "    endpoints:\n"
      "      - { host: a.com, port: 80, ports: [443, 8443] }\n"
      "      - { host: b.com, port: 80 }\n");
  REQUIRE(result.ok());
  const auto& policy = result.document->network_policies.at("web");
  CHECK(policy.name == "web");
  CHECK(policy.endpoints[0].ports == std::vector<uint16_t>{443, 8443});
  CHECK(policy.endpoints[1].ports == std::vector<uint16_t>{80});
  CHECK(policy.binaries.empty());
}

TEST_CASE("access presets expand into rules") {
  const auto result = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  p:\n"
      "    endpoints:\n"
      "      - { host: a.com, port: 443, protocol: rest, access: read-only }\n"
      "      - { host: b.com, port: 443, protocol: rest, access: read-write }\n"
      "      - { host: c.com, port: 443, protocol: rest, access: full }\n"
      "      - { host: d.com, port: 443, protocol: rest, access: everything }\n");
  REQUIRE(result.ok());
  const auto& eps = result.document->network_policies.at("p").endpoints;
  const auto methods = [](const Endpoint& e) {
    std::vector<std::string> out;
    for (const auto& r : e.rules) {
      CHECK(r.path == "**");
      out.push_back(r.method);
    }
    return out;
  };
  CHECK(methods(eps[0]) == std::vector<std::string>{"GET", "HEAD", "OPTIONS"});
  CHECK(methods(eps[1]) ==
        std::vector<std::string>{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"});
  CHECK(methods(eps[2]) == std::vector<std::string>{"*"});
  CHECK(eps[3].rules.empty());
  CHECK(find_diagnostic(result, "unsupported L7 access preset 'everything'") != nullptr);
}

TEST_CASE("features this build does not enforce load with a warning naming them") {
  const auto result = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  ws:\n"
      "    endpoints:\n"
      "      - { host: a.com, port: 443, protocol: websocket, access: full }\n"
      "      - { host: b.com, port: 443, protocol: rest, access: full, credential_signing: sigv4 "
      "}\n");
  INFO(render(result));
  REQUIRE(result.ok());
  CHECK(find_diagnostic(result, "protocol 'websocket' is not enforced") != nullptr);
  CHECK(find_diagnostic(result, "'credential_signing' is not supported") != nullptr);
}

TEST_CASE("allowed_ips entries are validated at load") {
  const auto bad = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  p:\n"
      "    endpoints:\n"
      "      - { host: a.com, port: 443, allowed_ips: [\"10.0.0.0/33\"] }\n"
      "      - { host: b.com, port: 443, allowed_ips: [\"127.0.0.0/8\"] }\n"
      "      - { host: c.com, port: 443, allowed_ips: [\"0.0.0.0/0\"] }\n");
  INFO(render(bad));
  CHECK_FALSE(bad.ok());
  CHECK(find_diagnostic(bad, "invalid CIDR/IP in allowed_ips: 10.0.0.0/33") != nullptr);
  CHECK(find_diagnostic(bad, "allowed_ips entry 127.0.0.0/8 falls within always-blocked") !=
        nullptr);
  CHECK(find_diagnostic(bad, "allowed_ips entry 0.0.0.0/0 falls within always-blocked") != nullptr);

  const auto broad = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  p:\n"
      "    endpoints: [{ port: 8080, allowed_ips: [\"10.0.0.0/8\"] }]\n");
  INFO(render(broad));
  CHECK(broad.ok());
  CHECK(find_diagnostic(broad, "broader than /16") != nullptr);
}

TEST_CASE("hosts such as localhost and metadata addresses load; SSRF decides later") {
  const auto result = load_policy(
      "version: 1\n"
      "network_policies:\n"
      "  p:\n"
      "    endpoints: [{host: localhost, port: 80}, {host: 169.254.169.254, port: 80}]\n");
  CHECK(result.ok());
}

TEST_CASE("oversized and deeply nested documents are refused cleanly") {
  std::string huge = "version: 1\n# ";
  huge.append(size_t{5} << 20, 'x');
  CHECK_FALSE(load_policy(huge).ok());

  std::string deep(100000, '[');
  CHECK_FALSE(load_policy(deep).ok());
}

TEST_CASE("every policy of the compatibility corpus loads unchanged") {
  namespace fs = std::filesystem;
  const fs::path corpus = fs::path(openshell::test::specs_dir()) / "openshell-policies";
  REQUIRE(fs::is_directory(corpus));
  int count = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    if (entry.path().extension() != ".yaml") continue;
    const auto result = load_policy_file(entry.path());
    INFO(entry.path().string() << "\n" << render(result));
    CHECK(result.ok());
    ++count;
  }
  CHECK(count >= 7);
}

TEST_CASE("every example policy loads without errors") {
  namespace fs = std::filesystem;
  const fs::path examples = fs::path(openshell::test::source_root()) / "examples" / "policies";
  REQUIRE(fs::is_directory(examples));
  int count = 0;
  for (const auto& entry : fs::directory_iterator(examples)) {
    const auto result = load_policy_file(entry.path());
    INFO(entry.path().string() << "\n" << render(result));
    CHECK(entry.path().extension() == ".yaml");
    CHECK(result.ok());
    ++count;
  }
  CHECK(count >= 5);
}

TEST_CASE("an unreadable file is one error, not a crash") {
  const auto result = load_policy_file("/nonexistent/policy.yaml");
  REQUIRE_FALSE(result.ok());
  REQUIRE(result.diagnostics.size() == 1);
  CHECK(result.diagnostics[0].message.find("cannot read") != std::string::npos);
}

TEST_CASE("a YAML alias bomb is refused instead of expanding to millions of rules") {
  // 3,001 endpoints, each an alias to one endpoint holding 3,001 aliased rules: 9 million rules
  // from 45 KB of text.
  std::string text =
      "version: 1\nnetwork_policies:\n  p:\n    endpoints:\n"
      "      - &e {host: a.example, port: 443, protocol: rest, rules: [&r {allow: {method: GET, "
      "path: /x}}";
  for (int i = 0; i < 3000; ++i) text += ", *r";
  text += "]}\n";
  for (int i = 0; i < 3000; ++i) text += "      - *e\n";
  const auto result = load_policy(text);
  REQUIRE_FALSE(result.ok());
  REQUIRE(result.diagnostics.size() == 1);
  CHECK_THAT(result.diagnostics[0].message, Catch::Contains("expands to more than"));
}
