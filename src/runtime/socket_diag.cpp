// SocketDiag: one SOCK_DIAG_BY_FAMILY request without NLM_F_DUMP, which the kernel answers from
// its established-socket hash (inet_diag_find_one_icsk) instead of a table walk.
#include "openshell/runtime/socket_diag.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace openshell::runtime {
namespace {

// A lookup answers at once; this only bounds a kernel that never does.
constexpr int kReplyTimeoutMs = 100;

std::optional<asio::ip::address_v4> ipv4_of(const asio::ip::address& address) {
  if (address.is_v4()) return address.to_v4();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> SocketDiag::inode_of(const asio::ip::tcp::endpoint& local,
                                             const asio::ip::tcp::endpoint& remote) {
  const auto local_ip = ipv4_of(local.address());
  const auto remote_ip = ipv4_of(remote.address());
  if (!local_ip || !remote_ip || !socket_) return std::nullopt;

  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  const std::lock_guard lock(mutex_);
  const uint32_t sequence = ++sequence_;
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.header.nlmsg_seq = sequence;
  message.request.sdiag_family = AF_INET;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;  // a fast client may already be half-closed
  // The kernel finds the socket that would receive a packet from dst:dport to src:sport, that
  // is, the one whose local end is src:sport: the client's end, as asked.
  message.request.id.idiag_sport = htons(local.port());
  message.request.id.idiag_dport = htons(remote.port());
  const auto local_bytes = local_ip->to_bytes();
  const auto remote_bytes = remote_ip->to_bytes();
  std::memcpy(&message.request.id.idiag_src[0], local_bytes.data(), 4);
  std::memcpy(&message.request.id.idiag_dst[0], remote_bytes.data(), 4);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(socket_.get(), &message, sizeof message, MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) != sizeof message) {
    return std::nullopt;
  }
  // Replies to earlier, abandoned queries may still be queued: skip anything not ours.
  alignas(nlmsghdr) std::array<char, 8192> buffer;
  for (;;) {
    pollfd ready{socket_.get(), POLLIN, 0};
    if (::poll(&ready, 1, kReplyTimeoutMs) <= 0) return std::nullopt;
    const ssize_t got = ::recv(socket_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return std::nullopt;
    }
    // The NLMSG_* macros use C casts; the same walk, spelled out (headers are 4-byte aligned).
    const auto size = static_cast<std::size_t>(got);
    for (std::size_t offset = 0; offset + sizeof(nlmsghdr) <= size;) {
      nlmsghdr reply;
      std::memcpy(&reply, buffer.data() + offset, sizeof reply);
      if (reply.nlmsg_len < sizeof reply || reply.nlmsg_len > size - offset) break;
      const std::size_t next =
          offset + ((reply.nlmsg_len + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1));
      if (reply.nlmsg_seq != sequence) {
        offset = next;
        continue;
      }
      if (reply.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
          reply.nlmsg_len < sizeof reply + sizeof(inet_diag_msg)) {
        return std::nullopt;  // NLMSG_ERROR (no such socket), NLMSG_DONE, or malformed
      }
      inet_diag_msg found;
      std::memcpy(&found, buffer.data() + offset + sizeof reply, sizeof found);
      if (found.idiag_inode == 0) return std::nullopt;  // TIME_WAIT: no socket behind it
      return found.idiag_inode;
    }
  }
}

}  // namespace openshell::runtime
