// Failed SSH authentications per peer, across connections (issue 9: "failed auth is logged and
// rate-limited"). A failure is a connection that ended without getting in after a refused key; a
// peer is a uid on the unix socket or an address over TCP. One with kSshMaxFailuresPerPeer
// failures inside kSshFailureWindow is turned away at accept until the oldest of them leaves the
// window. Thread-safe.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace openshell::runtime::ssh {

class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  AuthThrottle(int max_failures, std::chrono::seconds window)
      : max_failures_(max_failures), window_(window) {}

  bool admits(const std::string& peer, Clock::time_point now = Clock::now());
  void record_failure(const std::string& peer, Clock::time_point now = Clock::now());

 private:
  // Drops failures older than the window (and peers left with none).
  void expire_locked(Clock::time_point now);

  const int max_failures_;
  const std::chrono::seconds window_;
  std::mutex mutex_;
  std::map<std::string, std::deque<Clock::time_point>> failures_;
};

}  // namespace openshell::runtime::ssh
