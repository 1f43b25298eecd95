// Counting failed SSH authentications per peer over a sliding window.
#include "ssh_throttle.hpp"

namespace openshell::runtime::ssh {

void AuthThrottle::expire_locked(Clock::time_point now) {
  for (auto it = failures_.begin(); it != failures_.end();) {
    auto& times = it->second;
    while (!times.empty() && now - times.front() >= window_)
      times.pop_front();
    it = times.empty() ? failures_.erase(it) : std::next(it);
  }
}

bool AuthThrottle::admits(const std::string& peer, Clock::time_point now) {
  const std::lock_guard lock(mutex_);
  expire_locked(now);
  const auto found = failures_.find(peer);
  return found == failures_.end() || static_cast<int>(found->second.size()) < max_failures_;
}

void AuthThrottle::record_failure(const std::string& peer, Clock::time_point now) {
  const std::lock_guard lock(mutex_);
  expire_locked(now);
  auto& times = failures_[peer];
  times.push_back(now);
  // Never more than the limit is kept: a peer hammering away does not grow the map.
  while (static_cast<int>(times.size()) > max_failures_)
    times.pop_front();
}

}  // namespace openshell::runtime::ssh
