// ConnectOwners: which process connected each socket to the sandbox's proxy listener, as the
// bypass monitor saw the connect(2) (socket inode -> pid). The identity lookup starts from it
// instead of scanning every process's fd table (spec §6.2), which costs ~30 µs per process.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace openshell::runtime {

class ConnectOwners {
 public:
  // Remembers at most this many connects; the oldest are forgotten first (their lookups, if
  // they ever come, fall back to the scan).
  static constexpr std::size_t kCapacity = 4096;

  // The socket behind `fd` of `pid` (readlink /proc/pid/fd/N); false when it is not a socket
  // or the process is gone.
  bool record_fd(pid_t pid, uint64_t fd);
  void record(uint64_t inode, pid_t pid);
  std::optional<pid_t> find(uint64_t inode) const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, pid_t> owners_;
  std::deque<uint64_t> order_;  // inodes, oldest first
};

}  // namespace openshell::runtime
