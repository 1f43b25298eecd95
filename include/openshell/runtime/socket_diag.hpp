// SocketDiag: a TCP socket's inode from its exact 4-tuple, asked of the kernel over
// NETLINK_SOCK_DIAG in the sandbox's network namespace. Reading /proc/<pid>/net/tcp instead makes
// the kernel walk its whole connection table, shared by every namespace and sized by memory
// (milliseconds per lookup); this is one hash lookup (microseconds).
#pragma once

// See proxy/relay.hpp: GCC 12 -O2 false -Wnull-dereference inside Asio's headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/ip/tcp.hpp>
#pragma GCC diagnostic pop

#include <cstdint>
#include <mutex>
#include <optional>

#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

class SocketDiag {
 public:
  // `socket`: AF_NETLINK/NETLINK_SOCK_DIAG, created inside the namespace whose sockets it sees
  // (a netlink socket keeps the namespace it was created in).
  explicit SocketDiag(UniqueFd socket) : socket_(std::move(socket)) {}

  // The inode of the IPv4 TCP socket whose local address is `local` and remote is `remote`;
  // nullopt when there is none (or for IPv6, which the sandbox's listener does not use) or the
  // kernel does not answer: callers then fall back to procfs. Thread-safe (one query at a time).
  std::optional<uint64_t> inode_of(const asio::ip::tcp::endpoint& local,
                                   const asio::ip::tcp::endpoint& remote);

 private:
  std::mutex mutex_;
  UniqueFd socket_;
  uint32_t sequence_ = 0;
};

}  // namespace openshell::runtime
