// The wire between the runtime and its spawner: typed messages over a SOCK_SEQPACKET socketpair,
// fragmented so an environment of any allowed size fits under the socket's buffer limit, with
// file descriptors (stdio, pidfd, the in-namespace listener) passed as SCM_RIGHTS.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime::protocol {

// A SEQPACKET datagram must fit the sender's socket buffer (about 200 KiB by default).
inline constexpr size_t kFragmentBytes = size_t{32} * 1024;
// argv + environment beyond this is refused (Linux's own ARG_MAX-style limit is lower).
inline constexpr size_t kMaxMessageBytes = size_t{8} << 20;
// stdin, stdout, stderr; or pidfd, listener, the bypass monitor's listener and socket diag.
inline constexpr size_t kMaxFds = 4;

enum class Type : uint32_t {
  kSpawn = 1,         // runtime -> spawner: SandboxSpec; fds: stdin, stdout, stderr
  kSpawned = 2,       // spawner -> runtime: pid, warnings; fds: pidfd [, listener] [, bypass]
                      // [, socket diag]
  kSpawnFailed = 3,   // spawner -> runtime: SpawnFailure
  kExited = 4,        // spawner -> runtime: SandboxExit
  kSpawnSession = 5,  // runtime -> spawner: SandboxSpec; fds: stdin, stdout, stderr, the pidfd of
                      // the sandbox's init (answered by kSpawned with the session's pid and
                      // pidfd, or kSpawnFailed)
  kConnect = 6,       // runtime -> spawner: a sockaddr_in or sockaddr_in6; fds: the pidfd of the
                      // sandbox's init (answered by kConnected or kSpawnFailed)
  kConnected = 7,     // spawner -> runtime: fds: a TCP socket connected inside the sandbox
};

struct Message {
  Type type = Type::kSpawn;
  std::string payload;
  std::vector<UniqueFd> fds;  // received close-on-exec
};

Result<void> send_message(int socket_fd, Type type, std::string_view payload,
                          std::span<const int> fds = {});
// Blocks for the next message; nullopt: the peer closed the channel.
Result<std::optional<Message>> receive_message(int socket_fd);

std::string encode_spec(const SandboxSpec& spec);
std::optional<SandboxSpec> decode_spec(std::string_view payload);

struct Spawned {
  pid_t pid = -1;
  std::vector<std::string> warnings;
  bool has_listener = false;        // the proxy listener follows the pidfd
  bool has_bypass_monitor = false;  // the bypass monitor's listener follows
  bool has_socket_diag = false;     // the sandbox's NETLINK_SOCK_DIAG socket comes last
};
std::string encode_spawned(const Spawned& spawned);
std::optional<Spawned> decode_spawned(std::string_view payload);

std::string encode_failure(const SpawnFailure& failure);
std::optional<SpawnFailure> decode_failure(std::string_view payload);

std::string encode_exit(const SandboxExit& exit);
std::optional<SandboxExit> decode_exit(std::string_view payload);

}  // namespace openshell::runtime::protocol
