// ConnectOwners: a bounded inode -> pid map filled from the bypass monitor's thread.
#include "openshell/runtime/connect_owners.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <string_view>

namespace openshell::runtime {

bool ConnectOwners::record_fd(pid_t pid, uint64_t fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd/%llu", static_cast<int>(pid),
                static_cast<unsigned long long>(fd));
  char target[64];
  const ssize_t n = ::readlink(path, target, sizeof target);
  if (n <= 0) return false;
  std::string_view link(target, static_cast<std::size_t>(n));
  constexpr std::string_view kPrefix = "socket:[";
  if (!link.starts_with(kPrefix) || !link.ends_with(']')) return false;
  link = link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1);
  uint64_t inode = 0;
  const auto [end, error] = std::from_chars(link.data(), link.data() + link.size(), inode);
  if (error != std::errc() || end != link.data() + link.size() || inode == 0) return false;
  record(inode, pid);
  return true;
}

void ConnectOwners::record(uint64_t inode, pid_t pid) {
  const std::lock_guard lock(mutex_);
  const auto [it, inserted] = owners_.insert_or_assign(inode, pid);
  if (!inserted) return;  // a socket connected again (after a failed attempt): same slot
  order_.push_back(inode);
  if (order_.size() > kCapacity) {
    owners_.erase(order_.front());
    order_.pop_front();
  }
}

std::optional<pid_t> ConnectOwners::find(uint64_t inode) const {
  const std::lock_guard lock(mutex_);
  const auto it = owners_.find(inode);
  if (it == owners_.end()) return std::nullopt;
  return it->second;
}

}  // namespace openshell::runtime
