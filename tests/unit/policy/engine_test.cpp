// Engine outputs the data plane relies on beyond allow/deny: the primary endpoint config,
// declared-host flag, L7 route, canonicalisation options, hostile hosts, generations.
#include "openshell/policy/engine.hpp"

#include <catch2/catch.hpp>

#include "openshell/policy/loader.hpp"

using namespace openshell::policy;

namespace {

std::shared_ptr<const CompiledPolicy> compile(const std::string& yaml, uint64_t generation = 7) {
  auto loaded = load_policy(yaml);
  std::string diagnostics;
  for (const auto& d : loaded.diagnostics)
    diagnostics += d.to_string() + "\n";
  INFO(diagnostics);
  REQUIRE(loaded.ok());
  return compile_policy(*loaded.document, generation);
}

ConnectDecision connect(const CompiledPolicy& engine, std::string_view host, uint16_t port) {
  return engine.decide_connect(ConnectInput{host, port, nullptr});
}

const char* kMixed = R"(version: 1
network_policies:
  b_l4:
    endpoints:
      - { host: api.example.com, port: 443 }
  a_rest:
    endpoints:
      - { host: api.example.com, port: 443, protocol: rest, access: read-only,
          allow_encoded_slash: true }
  c_private:
    endpoints:
      - { host: db.internal, port: 5432, tls: skip, allowed_ips: ["10.1.2.0/24"] }
  d_wild:
    endpoints:
      - { host: "*.example.com", port: 443 }
)";

}  // namespace

TEST_CASE("deny-all policy denies everything with the spec's reason") {
  const auto engine = deny_all_policy(3);
  const auto d = connect(*engine, "example.com", 443);
  CHECK(d.action == Action::kDeny);
  CHECK(d.reason == "network connections not allowed by policy");
  CHECK(d.generation == 3);
  CHECK(d.matched_policy.empty());
}

TEST_CASE("the lexicographically smallest admitting key wins and supplies the route") {
  const auto engine = compile(kMixed);
  const auto d = connect(*engine, "API.Example.COM", 443);
  CHECK(d.action == Action::kAllow);
  CHECK(d.matched_policy == "a_rest");
  CHECK(d.generation == 7);
  CHECK(d.has_l7_route);
  CHECK(d.exact_declared_host);
  REQUIRE(d.primary != nullptr);
  CHECK(d.primary->source().protocol == Protocol::kRest);
  CHECK_FALSE(d.primary->tls_skip());
  CHECK(canon_options(d).allow_encoded_slash);
}

TEST_CASE("wildcard matches are not declared hosts and carry no extended config") {
  const auto engine = compile(kMixed);
  const auto d = connect(*engine, "www.example.com", 443);
  CHECK(d.action == Action::kAllow);
  CHECK(d.matched_policy == "d_wild");
  CHECK_FALSE(d.exact_declared_host);
  CHECK_FALSE(d.has_l7_route);
  CHECK(d.primary == nullptr);
  CHECK(connect(*engine, "a.b.example.com", 443).action == Action::kDeny);
}

TEST_CASE("allowed_ips and tls: skip come from the primary endpoint") {
  const auto engine = compile(kMixed);
  const auto d = connect(*engine, "db.internal", 5432);
  REQUIRE(d.action == Action::kAllow);
  REQUIRE(d.primary != nullptr);
  CHECK(d.primary->tls_skip());
  CHECK(d.primary->has_allowed_ips());
  CHECK(d.primary->allowed_ips_contain(*IpAddress::parse("10.1.2.77")));
  CHECK_FALSE(d.primary->allowed_ips_contain(*IpAddress::parse("10.1.3.1")));
  CHECK(d.primary->allowed_ips().size() == 1);
}

TEST_CASE("without an identity source binaries are not evaluated; with one they are") {
  const auto engine = compile(R"(version: 1
network_policies:
  curl_only:
    endpoints: [{ host: example.com, port: 443 }]
    binaries: [{ path: /usr/bin/curl }]
)");
  CHECK(connect(*engine, "example.com", 443).action == Action::kAllow);
  const std::vector<std::string> none;
  ProcessIdentity wget{"/usr/bin/wget", none, none};
  const auto denied = engine->decide_connect(ConnectInput{"example.com", 443, &wget});
  CHECK(denied.action == Action::kDeny);
  CHECK_THAT(denied.reason, Catch::Contains("binary '/usr/bin/wget' not allowed in policy "
                                            "'curl_only'"));
}

TEST_CASE("hostile hosts are denied, never crash") {
  const auto engine = compile(kMixed);
  const std::string nul("api.example.com\0x", 17);
  CHECK(connect(*engine, nul, 443).action == Action::kDeny);
  CHECK_THAT(connect(*engine, nul, 443).reason, Catch::Contains("policy evaluation error"));
  const std::string long_host(10000, 'a');
  const auto d = connect(*engine, long_host, 443);
  CHECK(d.action == Action::kDeny);
  CHECK_THAT(d.reason, Catch::Contains("is not allowed by any policy"));
  CHECK(connect(*engine, "", 443).action == Action::kDeny);
  CHECK(connect(*engine, ".", 443).action == Action::kDeny);
  CHECK(connect(*engine, "..example.com", 443).action == Action::kDeny);
}

TEST_CASE("endpoints with unsupported features deny until supported") {
  const auto engine = compile(R"(version: 1
network_policies:
  ws:
    endpoints: [{ host: chat.example.com, port: 443, protocol: websocket, access: full }]
)");
  const auto d = connect(*engine, "chat.example.com", 443);
  CHECK(d.action == Action::kDeny);
  CHECK_THAT(d.reason, Catch::Contains("does not enforce"));
}

TEST_CASE("many overlapping policies beyond the inline candidate buffer") {
  std::string yaml = "version: 1\nnetwork_policies:\n";
  for (int i = 0; i < 100; ++i) {
    yaml += "  p" + std::to_string(1000 + i) +
            ":\n    endpoints: [{ host: shared.example.com, port: 443 }, "
            "{ host: \"*.example.com\", port: 443 }]\n";
  }
  const auto engine = compile(yaml);
  const auto d = connect(*engine, "shared.example.com", 443);
  CHECK(d.action == Action::kAllow);
  CHECK(d.matched_policy == "p1000");
}

TEST_CASE("L7 on an endpoint without a route is the L4 decision") {
  const auto engine = compile(kMixed);
  const QueryParams none;
  const auto d = engine->decide_request(ConnectInput{"www.example.com", 443, nullptr},
                                        RequestInput{"DELETE", "/x", &none});
  CHECK(d.action == Action::kAllow);
  CHECK(d.layer == Layer::kL4);
}

TEST_CASE("L7 deny reports whether a deny rule matched") {
  const auto engine = compile(R"(version: 1
network_policies:
  gh:
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: read-write
        deny_rules: [{ method: POST, path: "/repos/*/*/pulls/*/reviews" }]
)");
  const QueryParams none;
  const ConnectInput c{"api.github.com", 443, nullptr};
  const auto blocked = engine->decide_request(c, {"POST", "/repos/a/b/pulls/1/reviews", &none});
  CHECK(blocked.action == Action::kDeny);
  CHECK(blocked.denied_by_rule);
  CHECK(blocked.layer == Layer::kL7);
  CHECK(blocked.matched_policy == "gh");
  CHECK(blocked.reason == "POST /repos/a/b/pulls/1/reviews blocked by deny rule");
  const auto missing = engine->decide_request(c, {"DELETE", "/repos/a/b", &none});
  CHECK(missing.action == Action::kDeny);
  CHECK_FALSE(missing.denied_by_rule);
  CHECK(missing.reason == "DELETE /repos/a/b not permitted by policy");
  CHECK(engine->decide_request(c, {"post", "/repos/a/b/issues", &none}).action == Action::kAllow);
}

TEST_CASE("a NUL in a query value is an evaluation error, not a silent non-match") {
  const auto engine = compile(R"(version: 1
network_policies:
  gh:
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        enforcement: audit
        access: full
        deny_rules: [{ method: POST, path: "/**", query: { force: "true" } }]
)");
  const QueryParams query{{"force", std::string("tr\0ue", 5)}};
  const auto d = engine->decide_request(ConnectInput{"api.github.com", 443, nullptr},
                                        RequestInput{"POST", "/x", &query});
  CHECK(d.action == Action::kDeny);
  CHECK_THAT(d.reason, Catch::Contains("NUL"));
}
