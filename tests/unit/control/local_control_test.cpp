// LocalProxyControl specifics: the sandbox-mode refusal of static sections (spec §1.1), digests,
// and a slow watcher that loses the oldest updates instead of stalling the proxy.
#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace openshell::control::test;
namespace proxy = openshell::proxy;

TEST_CASE("sha256_hex", "[control][local]") {
  CHECK(proxy::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(proxy::sha256_hex("") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("sandbox mode refuses changed static sections, accepts unchanged ones",
          "[control][local]") {
  const std::string startup =
      "version: 1\n"
      "filesystem_policy: {read_only: [/usr]}\n"
      "landlock: {compatibility: best_effort}\n"
      "network_policies: {}\n";
  Harness h(Transport::kLocal, proxy::LocalControlOptions{true, startup, {}});
  auto& control = h.control();

  auto same = control.push_policy({startup, proxy::PolicyFormat::kYaml, ""});
  REQUIRE(same.ok());
  CHECK(same->accepted);
  CHECK(same->warnings.empty());

  const std::string changed =
      "version: 1\n"
      "filesystem_policy: {read_only: [/usr, /etc]}\n"
      "process: {run_as_user: sandbox}\n"
      "network_policies: {}\n";
  auto refused = control.push_policy({changed, proxy::PolicyFormat::kYaml, ""});
  REQUIRE(refused.ok());
  CHECK_FALSE(refused->accepted);
  CHECK(refused->generation == 1);
  REQUIRE(refused->errors.size() == 3);
  CHECK(refused->errors[0].path == "filesystem_policy");
  CHECK(refused->errors[0].message ==
        "filesystem policy cannot be changed on a live sandbox (applied at startup)");
  CHECK(refused->errors[1].message ==
        "landlock policy cannot be changed on a live sandbox (applied at startup)");
  CHECK(refused->errors[2].message ==
        "process policy cannot be changed on a live sandbox (applied at startup)");
}

TEST_CASE("a slow watcher drops the oldest updates and is told how many", "[control][local]") {
  proxy::DenialAggregator denials;
  auto subscription = denials.subscribe(4);
  for (int i = 0; i < 10; ++i)
    denials.record({"h" + std::to_string(i), 1, "", "r", "connect"});
  auto first = subscription->pop(std::chrono::milliseconds(0));
  REQUIRE(first);
  CHECK(first->dropped == 6);
  CHECK(first->event.host == "h6");
  CHECK(subscription->pop(std::chrono::milliseconds(0))->dropped == 0);
  denials.unsubscribe(subscription);
  denials.record({"after", 1, "", "r", "connect"});
  CHECK(subscription->pop(std::chrono::milliseconds(0))->event.host == "h8");
  CHECK(denials.total() == 11);
}

TEST_CASE("close() ends a local watch", "[control][local]") {
  Harness h(Transport::kLocal);
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    h.local->close();
  });
  auto watched = h.local->watch_denials({}, [](const auto&) { return true; });
  closer.join();
  CHECK(watched.ok());
}
