// `ssh -L` (direct-tcpip) into a sandbox: only to the sandbox's own loopback, connected from
// inside its network namespace by the spawner (runtime-spec §6.2; SessionLauncher::connect), so
// a forward can never reach the host's loopback or anything else the proxy guards.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "openshell/core/result.hpp"
#include "openshell/runtime/unique_fd.hpp"
#include "ssh_channel.hpp"

namespace openshell::runtime::ssh {

// The address for `host` and `port` when host is a loopback name or address (127.0.0.0/8,
// "localhost", ::1 in any spelling, ::ffff:127.x.y.z, bracketed or not) and the port 1..65535.
std::optional<sockaddr_storage> loopback_destination(std::string_view host, uint32_t port);

// An accepted direct-tcpip channel and its socket: bytes both ways, each side's EOF passed on
// (a shutdown of the socket's writing side; an SSH EOF), closed when both ended.
class ForwardChannel : public ChannelHandler {
 public:
  ForwardChannel(ssh_channel channel, UniqueFd socket)
      : channel_(channel), socket_(std::move(socket)) {}
  ~ForwardChannel() override { ssh_channel_free(channel_); }
  ForwardChannel(const ForwardChannel&) = delete;
  ForwardChannel& operator=(const ForwardChannel&) = delete;

  bool pump() override;
  void watch(Watches& watches) const override;
  bool backlog() const override { return backlog_; }

 private:
  ssh_channel channel_;
  UniqueFd socket_;
  Inbound inbound_;
  bool to_socket_ended_ = false;  // the client's EOF was passed on
  bool from_socket_ended_ = false;
  bool backlog_ = false;
};

}  // namespace openshell::runtime::ssh
