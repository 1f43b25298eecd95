// Credential injection (spec §4.3–4.5): header forms, query values, path segments, bindings,
// fail-closed scans, redaction, bodies, and the store's validation.
#include "openshell/proxy/credential_rewrite.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "openshell/proxy/credential_body.hpp"
#include "openshell/proxy/credentials.hpp"

namespace proxy = openshell::proxy;
using proxy::CredentialFailure;

namespace {

constexpr const char* kSecret = "sk-live-0123";

std::shared_ptr<const proxy::CredentialSet> make_set(proxy::CredentialMap map) {
  auto set = proxy::CredentialSet::build(map);
  REQUIRE(set.ok());
  return *set;
}

std::shared_ptr<const proxy::CredentialSet> simple_set() {
  proxy::CredentialMap map;
  map["API_KEY"].value = kSecret;
  map["BOUND"].value = "bound-secret";
  map["BOUND"].bindings.push_back({"api.example.com", 443, "/v1/**"});
  map["SLASHY"].value = "a/b";
  return make_set(map);
}

proxy::HeadRewrite run(std::string_view target, std::vector<proxy::HeaderField>& headers,
                       const proxy::CredentialSet& set, std::string_view host = "api.example.com",
                       uint16_t port = 443) {
  return proxy::rewrite_request_credentials(target, headers, {&set, host, port, {}});
}

}  // namespace

TEST_CASE("credentials: header whole value, Bearer prefix and Basic auth") {
  const auto set = simple_set();
  std::vector<proxy::HeaderField> headers{
      {"X-Api-Key", "openshell:resolve:env:API_KEY"},
      {"Authorization", "Bearer openshell:resolve:env:API_KEY"},
      {"Accept", "*/*"},
  };
  const auto out = run("/v1/chat", headers, *set);
  REQUIRE(out.outcome.ok());
  CHECK(out.outcome.substituted);
  CHECK(headers[0].value == kSecret);
  CHECK(headers[1].value == std::string("Bearer ") + kSecret);
  CHECK(headers[2].value == "*/*");
  CHECK(out.target == "/v1/chat");

  // user:openshell:resolve:env:API_KEY in base64.
  std::vector<proxy::HeaderField> basic{
      {"Authorization", "Basic dXNlcjpvcGVuc2hlbGw6cmVzb2x2ZTplbnY6QVBJX0tFWQ=="}};
  REQUIRE(run("/", basic, *set).outcome.ok());
  CHECK(basic[0].value == "Basic dXNlcjpzay1saXZlLTAxMjM=");  // user:sk-live-0123
}

TEST_CASE("credentials: query values decoded, replaced, re-encoded; redacted for policy") {
  const auto set = simple_set();
  std::vector<proxy::HeaderField> headers;
  const auto out = run("/v1/x?a=1&key=openshell%3Aresolve%3Aenv%3AAPI_KEY&b=c%20d", headers, *set);
  REQUIRE(out.outcome.ok());
  CHECK(out.target == "/v1/x?a=1&key=sk-live-0123&b=c%20d");
  CHECK(out.redacted == "/v1/x?a=1&key=[CREDENTIAL]&b=c%20d");

  proxy::CredentialMap map;
  map["K"].value = "a b&c=d";
  const auto odd = make_set(map);
  const auto encoded = run("/?k=openshell:resolve:env:K", headers, *odd);
  REQUIRE(encoded.outcome.ok());
  CHECK(encoded.target == "/?k=a%20b%26c%3Dd");
}

TEST_CASE("credentials: path segments, substring allowed, unsafe secrets refused") {
  const auto set = simple_set();
  std::vector<proxy::HeaderField> headers;
  const auto out = run("/botopenshell:resolve:env:API_KEY/sendMessage", headers, *set);
  REQUIRE(out.outcome.ok());
  CHECK(out.target == "/botsk-live-0123/sendMessage");
  CHECK(out.redacted == "/bot[CREDENTIAL]/sendMessage");

  const auto slash = run("/x/openshell:resolve:env:SLASHY", headers, *set);
  CHECK(slash.outcome.failure == CredentialFailure::kUnavailable);
  CHECK(slash.target.empty());
}

TEST_CASE("credentials: bindings scope a key to host, port and path") {
  const auto set = simple_set();
  std::vector<proxy::HeaderField> headers{{"Authorization", "Bearer openshell:resolve:env:BOUND"}};
  CHECK(run("/v1/models", headers, *set).outcome.ok());
  CHECK(headers[0].value == "Bearer bound-secret");

  for (const auto& [host, port, path] : {std::tuple{"other.example.com", 443, "/v1/models"},
                                         std::tuple{"api.example.com", 8443, "/v1/a"},
                                         std::tuple{"api.example.com", 443, "/v2/a"}}) {
    std::vector<proxy::HeaderField> h{{"Authorization", "Bearer openshell:resolve:env:BOUND"}};
    const auto out = run(path, h, *set, host, static_cast<uint16_t>(port));
    CHECK(out.outcome.failure == CredentialFailure::kEndpointMismatch);
    CHECK(out.outcome.key == "BOUND");
    CHECK(h[0].value.find("bound-secret") == std::string::npos);
  }
  // An unbound key goes anywhere.
  std::vector<proxy::HeaderField> anywhere{{"X-Key", "openshell:resolve:env:API_KEY"}};
  CHECK(run("/", anywhere, *set, "elsewhere.test", 80).outcome.ok());

  proxy::CredentialMap wild;
  wild["W"].value = "w";
  wild["W"].bindings.push_back({"*.example.com", 0, ""});
  const auto wildcard = make_set(wild);
  CHECK(wildcard->may_apply("a.example.com", 1));
  CHECK(!wildcard->may_apply("example.org", 1));
  CHECK(wildcard->binds_endpoint("a.example.com", 443));
  CHECK(!simple_set()->binds_endpoint("x.test", 443));
  CHECK(simple_set()->may_apply("x.test", 443));  // unbound keys apply everywhere
}

TEST_CASE("credentials: fail closed on unknown keys, leftovers and encoded markers") {
  const auto set = simple_set();
  std::vector<proxy::HeaderField> unknown{{"X-Key", "openshell:resolve:env:NOPE"}};
  const auto out = run("/", unknown, *set);
  CHECK(out.outcome.failure == CredentialFailure::kUnavailable);
  CHECK(out.outcome.key == "NOPE");

  // Embedded in a value (not whole, not prefixed), in a cookie, percent-encoded in a header:
  // nothing substitutes them, the final scan refuses.
  for (const char* value :
       {"x-openshell:resolve:env:API_KEY", "openshell%3aresolve%3Aenv%3AAPI_KEY",
        "OPENSHELL:RESOLVE:ENV:API_KEY"}) {
    std::vector<proxy::HeaderField> h{{"Cookie", value}};
    CHECK(run("/", h, *set).outcome.failure == CredentialFailure::kUnavailable);
  }
  std::vector<proxy::HeaderField> bare{{"X", "openshell:resolve:env:"}};
  CHECK(run("/", bare, *set).outcome.failure == CredentialFailure::kUnavailable);

  // No credentials at all: a marker is unresolvable.
  std::vector<proxy::HeaderField> none{{"X", "openshell:resolve:env:API_KEY"}};
  CHECK(proxy::rewrite_request_credentials("/", none, {nullptr, "h", 1, {}}).outcome.failure ==
        CredentialFailure::kUnavailable);

  CHECK(proxy::contains_credential_marker("a%3Aopenshell%3Aresolve%3aenv%3AK"));
  CHECK(!proxy::contains_credential_marker("openshell:resolve:other"));
  CHECK(proxy::contains_credential_marker("xxOPENSHELL%3ARESOLVE%3AENV%3Ak"));
  CHECK(proxy::contains_credential_marker("ooopenshell%3aresolve:env%3A"));
  CHECK(!proxy::contains_credential_marker("openshell%3resolve:env:"));
  CHECK(!proxy::contains_credential_marker(""));
}

TEST_CASE("credentials: provider-shaped aliases resolve like the canonical form") {
  const auto set = simple_set();
  std::vector<proxy::HeaderField> headers{
      {"X-Api-Key", "sk-OPENSHELL-RESOLVE-ENV-API_KEY"},
      {"Authorization", "Bearer sk-proj.1~x-OPENSHELL-RESOLVE-ENV-API_KEY"},
  };
  const auto out =
      run("/v1/sk-OPENSHELL-RESOLVE-ENV-API_KEY?k=x-OPENSHELL-RESOLVE-ENV-API_KEY", headers, *set);
  REQUIRE(out.outcome.ok());
  CHECK(headers[0].value == kSecret);
  CHECK(headers[1].value == std::string("Bearer ") + kSecret);
  CHECK(out.target == "/v1/sk-live-0123?k=sk-live-0123");
  CHECK(out.redacted == "/v1/[CREDENTIAL]?k=[CREDENTIAL]");

  std::vector<proxy::HeaderField> unknown{{"X-Api-Key", "sk-OPENSHELL-RESOLVE-ENV-NOPE"}};
  CHECK(run("/", unknown, *set).outcome.failure == CredentialFailure::kUnavailable);
  std::vector<proxy::HeaderField> lower{{"Cookie", "a=sk-openshell-resolve-env-API_KEY"}};
  CHECK(run("/", lower, *set).outcome.failure == CredentialFailure::kUnavailable);
}

TEST_CASE("credentials: redaction needs no secrets") {
  CHECK(proxy::redact_target("/a/openshell:resolve:env:K/b?x=openshell:resolve:env:K&y=2") ==
        "/a/[CREDENTIAL]/b?x=[CREDENTIAL]&y=2");
  CHECK(proxy::redact_target("/plain?q=1") == "/plain?q=1");
}

TEST_CASE("credentials: bodies by content type") {
  const auto set = simple_set();
  const proxy::CredentialScope scope{set.get(), "api.example.com", 443, "/v1/x"};
  CHECK(proxy::credential_body_kind("application/json; charset=utf-8") ==
        proxy::CredentialBodyKind::kJson);
  CHECK(proxy::credential_body_kind("application/vnd.api+json") ==
        proxy::CredentialBodyKind::kJson);
  CHECK(proxy::credential_body_kind("application/x-www-form-urlencoded") ==
        proxy::CredentialBodyKind::kForm);
  CHECK(proxy::credential_body_kind("text/plain") == proxy::CredentialBodyKind::kText);
  CHECK(proxy::credential_body_kind("text/plain; charset=latin1") ==
        proxy::CredentialBodyKind::kOther);
  CHECK(proxy::credential_body_kind("application/octet-stream") ==
        proxy::CredentialBodyKind::kOther);

  proxy::CredentialMap map;
  map["Q"].value = "he said \"hi\" \\ ok";
  const auto quoted = make_set(map);
  std::string json = R"({"key":"openshell:resolve:env:Q"})";
  REQUIRE(proxy::rewrite_credential_body(proxy::CredentialBodyKind::kJson, json,
                                         {quoted.get(), "h", 1, "/"})
              .ok());
  CHECK(json == R"({"key":"he said \"hi\" \\ ok"})");

  std::string form = "a=1&token=openshell%3Aresolve%3Aenv%3AAPI_KEY&b=x+y";
  REQUIRE(proxy::rewrite_credential_body(proxy::CredentialBodyKind::kForm, form, scope).ok());
  CHECK(form == "a=1&token=sk-live-0123&b=x+y");

  std::string text = "key openshell:resolve:env:API_KEY end";
  REQUIRE(proxy::rewrite_credential_body(proxy::CredentialBodyKind::kText, text, scope).ok());
  CHECK(text == "key sk-live-0123 end");

  std::string bad = "openshell:resolve:env:MISSING";
  const auto outcome = proxy::rewrite_credential_body(proxy::CredentialBodyKind::kText, bad, scope);
  CHECK(outcome.failure == CredentialFailure::kUnavailable);
  CHECK(bad.empty());
}

TEST_CASE("credentials: the store validates and swaps snapshots") {
  proxy::CredentialMap map;
  map["1BAD"].value = "x";
  auto bad_key = proxy::CredentialSet::build(map);
  REQUIRE(!bad_key.ok());
  CHECK(bad_key.error().message.find("1BAD") != std::string::npos);

  proxy::CredentialMap crlf;
  crlf["K"].value = "super-secret\r\nX: 1";
  auto bad_value = proxy::CredentialSet::build(crlf);
  REQUIRE(!bad_value.ok());
  CHECK(bad_value.error().message.find("super-secret") == std::string::npos);

  proxy::CredentialMap bad_binding;
  bad_binding["K"].value = "v";
  bad_binding["K"].bindings.push_back({"h", 0, "no-slash"});
  CHECK(!proxy::CredentialSet::build(bad_binding).ok());

  proxy::CredentialStore store;
  CHECK(store.current()->empty());
  const auto old = store.current();
  store.replace(simple_set());
  CHECK(store.current()->keys() == std::vector<std::string>{"API_KEY", "BOUND", "SLASHY"});
  CHECK(old->empty());  // a reader keeps its snapshot
}
