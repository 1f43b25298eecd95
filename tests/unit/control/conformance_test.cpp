// The ProxyControl contract, run unchanged against LocalProxyControl and GrpcProxyControl over a
// unix socket and over TCP with a token: a caller must not be able to tell them apart.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "harness.hpp"
#include "openshell_config.hpp"

using openshell::Errc;
using namespace openshell::control::test;
namespace proxy = openshell::proxy;

namespace {

constexpr const char* kPolicyA =
    "version: 1\n"
    "network_policies:\n"
    "  a:\n"
    "    endpoints:\n"
    "      - {host: a.example, port: 443}\n";

constexpr const char* kPolicyBad =
    "version: 1\n"
    "network_policies:\n"
    "  a:\n"
    "    endpoints:\n"
    "      - {host: a.example, port: 443, bogus: 1}\n"
    "      - {host: b.example, port: 99999}\n";

constexpr const char* kPolicyStatic =
    "version: 1\n"
    "landlock: {compatibility: best_effort}\n"
    "network_policies: {}\n";

Transport any_transport() {
  return GENERATE(Transport::kLocal, Transport::kUnix, Transport::kTcp);
}

}  // namespace

TEST_CASE("push-policy: accepted, generation, digest, get-policy", "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  auto& control = h.control();

  auto pushed = control.push_policy({kPolicyA, proxy::PolicyFormat::kYaml, "a.yaml"});
  REQUIRE(pushed.ok());
  CHECK(pushed->accepted);
  CHECK(pushed->generation == 1);
  CHECK(pushed->errors.empty());
  CHECK(h.store.generation() == 1);

  auto snapshot = control.get_policy();
  REQUIRE(snapshot.ok());
  CHECK(snapshot->generation == 1);
  CHECK(snapshot->document == kPolicyA);
  CHECK(snapshot->format == proxy::PolicyFormat::kYaml);
  CHECK(snapshot->digest == proxy::sha256_hex(kPolicyA));

  auto status = control.status();
  REQUIRE(status.ok());
  CHECK(status->generation == 1);
  CHECK(status->policy_digest == proxy::sha256_hex(kPolicyA));
  CHECK(status->counters.policy_pushes == 1);
  CHECK(status->listeners.size() == 1);
  CHECK(status->version == OPENSHELL_VERSION);
}

TEST_CASE("push-policy: a bad push changes nothing and returns every located error",
          "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  auto& control = h.control();
  REQUIRE(control.push_policy({kPolicyA, proxy::PolicyFormat::kYaml, ""})->accepted);

  auto refused = control.push_policy({kPolicyBad, proxy::PolicyFormat::kAuto, ""});
  REQUIRE(refused.ok());
  CHECK_FALSE(refused->accepted);
  CHECK(refused->generation == 1);
  REQUIRE(refused->errors.size() >= 2);
  for (const auto& error : refused->errors) {
    CHECK(error.location.line > 0);
    CHECK(error.location.column > 0);
    CHECK_FALSE(error.path.empty());
    CHECK_FALSE(error.message.empty());
  }
  CHECK(refused->errors[0].path == "network_policies.a.endpoints[0].bogus");
  CHECK(refused->errors[0].location.line == 5);
  CHECK(h.store.generation() == 1);
  CHECK(control.get_policy()->document == kPolicyA);
  CHECK(control.status()->counters.policy_push_failures == 1);
}

TEST_CASE("push-policy: the standalone proxy ignores static sections with a warning",
          "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  auto pushed = h.control().push_policy({kPolicyStatic, proxy::PolicyFormat::kAuto, ""});
  REQUIRE(pushed.ok());
  CHECK(pushed->accepted);
  REQUIRE(pushed->warnings.size() == 1);
  CHECK(pushed->warnings[0].path == "landlock");
  CHECK_THAT(pushed->warnings[0].message, Catch::Contains("ignored by the standalone proxy"));
}

TEST_CASE("set-credentials: placeholders back, key names in status, never the secrets",
          "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  auto& control = h.control();
  auto placeholders = control.set_credentials({{"GITHUB_TOKEN", "ghp_secret"}, {"B", "x"}});
  REQUIRE(placeholders.ok());
  CHECK(placeholders->size() == 2);
  CHECK(placeholders->at("GITHUB_TOKEN") == "openshell:resolve:env:GITHUB_TOKEN");
  auto status = control.status();
  REQUIRE(status.ok());
  CHECK(status->credential_keys == std::vector<std::string>{"B", "GITHUB_TOKEN"});

  auto bad_key = control.set_credentials({{"1BAD", "x"}});
  REQUIRE_FALSE(bad_key.ok());
  CHECK(bad_key.error().code == Errc::kInvalidArgument);
  auto bad_value = control.set_credentials({{"K", "a\r\nInjected: 1"}});
  REQUIRE_FALSE(bad_value.ok());
  CHECK(bad_value.error().code == Errc::kInvalidArgument);
  // A refused set leaves the previous one.
  CHECK(control.status()->credential_keys.size() == 2);
}

TEST_CASE("set-routes: stored, validated, named in status", "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  auto& control = h.control();
  proxy::InferenceRoute route{
      "local", "https://api.example/v1", "m", {"openai_chat_completions"}, "openai", "sk-secret"};
  auto count = control.set_routes({route});
  REQUIRE(count.ok());
  CHECK(*count == 1);
  CHECK(control.status()->route_names == std::vector<std::string>{"local"});

  proxy::InferenceRoute bad = route;
  bad.endpoint = "ftp://x";
  auto refused = control.set_routes({bad});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == Errc::kInvalidArgument);
  CHECK_THAT(refused.error().message, Catch::Contains("http(s) URL"));
  auto duplicate = control.set_routes({route, route});
  REQUIRE_FALSE(duplicate.ok());
  CHECK(control.status()->route_names.size() == 1);
}

TEST_CASE("get-ca: a clear no-CA error", "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  auto ca = h.control().get_ca();
  REQUIRE_FALSE(ca.ok());
  CHECK(ca.error().code == Errc::kUnavailable);
  CHECK_THAT(ca.error().message, Catch::StartsWith("no CA: TLS interception is not set up"));
}

TEST_CASE("get-ca: the proxy's CA certificate, unchanged", "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  proxy::LocalControlOptions options;
  options.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  Harness h(transport, options);
  auto ca = h.control().get_ca();
  REQUIRE(ca.ok());
  CHECK(*ca == options.ca_pem);
}

TEST_CASE("watch-denials: individual events and summaries arrive", "[control][conformance]") {
  const Transport transport = any_transport();
  INFO(transport_name(transport));
  Harness h(transport);
  std::atomic<bool> done{false};
  // Keeps recording until the watcher has seen what it waits for: the subscription may start
  // after the first records.
  std::thread producer([&] {
    while (!done.load()) {
      h.server->denials().record({"blocked.example", 443, "", "not allowed", "connect"});
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  proxy::DenialUpdate seen;
  auto watched = h.control().watch_denials({}, [&](const proxy::DenialUpdate& update) {
    seen = update;
    return false;
  });
  done = true;
  producer.join();
  REQUIRE(watched.ok());
  CHECK(seen.kind == proxy::DenialUpdate::Kind::kEvent);
  CHECK(seen.event.host == "blocked.example");
  CHECK(seen.event.port == 443);
  CHECK(seen.event.binary == "-");
  CHECK(seen.event.stage == "connect");
  CHECK(seen.time_ms > 0);

  // Summaries only: the window flush is what produces one.
  done = false;
  std::thread flusher([&] {
    while (!done.load()) {
      h.server->denials().record({"s.example", 80, "/bin/x", "r", "forward"});
      (void)h.server->denials().flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  proxy::WatchOptions summaries_only;
  summaries_only.events = false;
  summaries_only.summaries = true;
  proxy::DenialUpdate summary;
  // Earlier events of the first part may be flushed into a summary of their own first.
  auto watched_summaries = h.control().watch_denials(summaries_only, [&](const auto& update) {
    summary = update;
    return update.kind != proxy::DenialUpdate::Kind::kSummary || update.summary.host != "s.example";
  });
  done = true;
  flusher.join();
  REQUIRE(watched_summaries.ok());
  CHECK(summary.kind == proxy::DenialUpdate::Kind::kSummary);
  CHECK(summary.summary.host == "s.example");
  CHECK(summary.summary.binary == "/bin/x");
  CHECK(summary.summary.count >= 1);
}
