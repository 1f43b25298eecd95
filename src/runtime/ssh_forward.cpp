// Loopback-only destinations for direct-tcpip, and connecting inside the sandbox's namespace.
#include "ssh_forward.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace openshell::runtime::ssh {

std::optional<sockaddr_storage> loopback_destination(std::string_view host, uint32_t port) {
  if (port == 0 || port > 65535) return std::nullopt;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string name = host == "localhost" ? "127.0.0.1" : std::string(host);
  sockaddr_storage storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (::inet_pton(AF_INET, name.c_str(), &v4->sin_addr) == 1) {
    if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127) return std::nullopt;
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    return storage;
  }
  if (::inet_pton(AF_INET6, name.c_str(), &v6->sin6_addr) == 1) {
    const bool mapped_loopback =
        IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && v6->sin6_addr.s6_addr[12] == 127;
    if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr) && !mapped_loopback) return std::nullopt;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    return storage;
  }
  return std::nullopt;
}

bool ForwardChannel::pump() {
  if (ssh_channel_is_closed(channel_) != 0) return false;
  backlog_ = false;
  if (!to_socket_ended_) {
    const Flow flow = inbound_.drain_to_fd(channel_, socket_.get());
    if (flow == Flow::kEnd) {
      to_socket_ended_ = true;
      ::shutdown(socket_.get(), SHUT_WR);
    }
    backlog_ = flow == Flow::kMoved;
  }
  if (!from_socket_ended_ && drain_fd_to_channel(socket_.get(), channel_, false) == Flow::kEnd) {
    from_socket_ended_ = true;
    ssh_channel_send_eof(channel_);
  }
  if (to_socket_ended_ && from_socket_ended_) {
    ssh_channel_close(channel_);
    return false;
  }
  return true;
}

void ForwardChannel::watch(Watches& watches) const {
  short events = 0;
  if (!inbound_.pending().empty()) events |= POLLOUT;
  if (!from_socket_ended_ && ssh_channel_window_size(channel_) > 0) events |= POLLIN;
  ssh::watch(watches, socket_.get(), events);
}

}  // namespace openshell::runtime::ssh
