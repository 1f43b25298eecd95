// The SSH server's per-peer failed-authentication throttle (ssh_throttle.hpp): a sliding window
// driven by explicit time points, so no test sleeps.
#include "ssh_throttle.hpp"

#include <catch2/catch.hpp>
#include <chrono>

using openshell::runtime::ssh::AuthThrottle;
using namespace std::chrono_literals;

namespace {

constexpr int kLimit = 3;
constexpr std::chrono::seconds kWindow{60};
const AuthThrottle::Clock::time_point kStart{};

}  // namespace

TEST_CASE("a peer is admitted until its failures reach the limit") {
  AuthThrottle throttle(kLimit, kWindow);
  CHECK(throttle.admits("uid 1000", kStart));
  for (int i = 0; i < kLimit - 1; ++i) {
    throttle.record_failure("uid 1000", kStart + std::chrono::seconds(i));
    CHECK(throttle.admits("uid 1000", kStart + std::chrono::seconds(i)));
  }
  throttle.record_failure("uid 1000", kStart + 10s);
  CHECK_FALSE(throttle.admits("uid 1000", kStart + 10s));
  CHECK_FALSE(throttle.admits("uid 1000", kStart + 59s));
}

TEST_CASE("a throttled peer is admitted again once its oldest failure leaves the window") {
  AuthThrottle throttle(kLimit, kWindow);
  throttle.record_failure("127.0.0.1", kStart);
  throttle.record_failure("127.0.0.1", kStart + 20s);
  throttle.record_failure("127.0.0.1", kStart + 40s);
  CHECK_FALSE(throttle.admits("127.0.0.1", kStart + 59s));
  // The first failure is 60 s old: two remain, under the limit.
  CHECK(throttle.admits("127.0.0.1", kStart + 60s));
  // One more failure brings it back to the limit.
  throttle.record_failure("127.0.0.1", kStart + 61s);
  CHECK_FALSE(throttle.admits("127.0.0.1", kStart + 61s));
  CHECK(throttle.admits("127.0.0.1", kStart + 61s + kWindow));
}

TEST_CASE("failures beyond the limit do not extend the throttle past the newest window") {
  AuthThrottle throttle(kLimit, kWindow);
  for (int i = 0; i < 100; ++i)
    throttle.record_failure("::1", kStart + std::chrono::milliseconds(i));
  CHECK_FALSE(throttle.admits("::1", kStart + 1s));
  CHECK(throttle.admits("::1", kStart + 100ms + kWindow));
}

TEST_CASE("peers are counted independently") {
  AuthThrottle throttle(kLimit, kWindow);
  for (int i = 0; i < kLimit; ++i)
    throttle.record_failure("uid 1000", kStart);
  CHECK_FALSE(throttle.admits("uid 1000", kStart + 1s));
  CHECK(throttle.admits("uid 1001", kStart + 1s));
  CHECK(throttle.admits("127.0.0.1", kStart + 1s));
  throttle.record_failure("uid 1001", kStart + 1s);
  CHECK(throttle.admits("uid 1001", kStart + 1s));
}
