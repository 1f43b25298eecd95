// Decision cost with 10, 100 and 1,000 policies of a realistic shape (several endpoints per
// policy, wildcards, REST rules with deny rules and query matchers, binary globs).
#include <benchmark/benchmark.h>

#include <string>

#include "openshell/policy/engine.hpp"
#include "openshell/policy/loader.hpp"

namespace {

using namespace openshell::policy;

std::string make_policy(int count) {
  std::string yaml = "version: 1\nnetwork_policies:\n";
  for (int i = 0; i < count; ++i) {
    const std::string n = std::to_string(i);
    yaml += "  service_" + n + ":\n";
    yaml += "    endpoints:\n";
    yaml += "      - { host: api.service" + n + ".example.com, port: 443 }\n";
    yaml += "      - { host: \"*.cdn" + n + ".example.net\", ports: [443, 8443] }\n";
    yaml += "      - host: rest.service" + n + ".example.com\n";
    yaml += "        port: 443\n";
    yaml += "        protocol: rest\n";
    yaml += "        enforcement: enforce\n";
    yaml += "        rules:\n";
    yaml += "          - allow: { method: GET, path: \"/repos/*/issues\" }\n";
    yaml +=
        "          - allow: { method: GET, path: \"/repos/**\", query: { page: \"[0-9]*\" } }\n";
    yaml += "          - allow: { method: POST, path: \"/repos/*/*/pulls\" }\n";
    yaml += "          - allow: { method: GET, path: \"/**/info/refs*\" }\n";
    yaml += "        deny_rules:\n";
    yaml += "          - { method: POST, path: \"/repos/*/*/pulls/*/reviews\" }\n";
    yaml += "    binaries:\n";
    yaml += "      - { path: /usr/bin/curl }\n";
    yaml += "      - { path: \"/usr/lib/node_modules/**/bin/*\" }\n";
  }
  return yaml;
}

std::shared_ptr<const CompiledPolicy> compiled(int count) {
  auto loaded = load_policy(make_policy(count));
  if (!loaded.ok()) std::abort();
  return compile_policy(std::move(*loaded.document), 1);
}

const std::vector<std::string> kAncestors{"/usr/bin/bash", "/usr/bin/node"};
const std::vector<std::string> kNoCmdline;

void BM_L4Exact(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const auto engine = compiled(count);
  const std::string host = "api.service" + std::to_string(count / 2) + ".example.com";
  const ProcessIdentity identity{"/usr/bin/curl", kAncestors, kNoCmdline};
  const ConnectInput input{host, 443, &identity};
  for (auto _ : state) {
    auto decision = engine->decide_connect(input);
    benchmark::DoNotOptimize(decision);
  }
}

void BM_L4Wildcard(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const auto engine = compiled(count);
  const std::string host = "edge.cdn" + std::to_string(count / 2) + ".example.net";
  const ProcessIdentity identity{"/usr/lib/node_modules/x/bin/tool", kAncestors, kNoCmdline};
  const ConnectInput input{host, 8443, &identity};
  for (auto _ : state) {
    auto decision = engine->decide_connect(input);
    benchmark::DoNotOptimize(decision);
  }
}

void BM_L7(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const auto engine = compiled(count);
  const std::string host = "rest.service" + std::to_string(count / 2) + ".example.com";
  const ProcessIdentity identity{"/usr/bin/curl", kAncestors, kNoCmdline};
  const ConnectInput connection{host, 443, &identity};
  const QueryParams query{{"page", "2"}, {"per_page", "50"}};
  const RequestInput request{"GET", "/repos/acme/widgets/issues", &query};
  for (auto _ : state) {
    auto decision = engine->decide_request(connection, request);
    benchmark::DoNotOptimize(decision);
  }
}

void BM_L4Deny(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const auto engine = compiled(count);
  const ConnectInput input{"unknown.example.org", 443, nullptr};
  for (auto _ : state) {
    auto decision = engine->decide_connect(input);
    benchmark::DoNotOptimize(decision);
  }
}

}  // namespace

BENCHMARK(BM_L4Exact)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_L4Wildcard)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_L7)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_L4Deny)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK_MAIN();
