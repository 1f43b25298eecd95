// The caller's side of the spawner: forking it (while still single-threaded), sending spawn
// requests and turning replies and exit notices into values.
#include "openshell/runtime/spawner.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>

#include "spawn_protocol.hpp"
#include "spawner_process.hpp"

namespace openshell::runtime {
namespace {

// Counts /proc/self/task entries: fork() is only safe while this process has one thread.
Result<size_t> thread_count() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return Error::from_errno("opendir /proc/self/task");
  size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count;
}

SpawnFailure spawner_gone(std::string what) {
  return {kExitSetupFailed, "spawner: " + std::move(what), {}};
}

// The spawner's answer to our last request: a message of type `expected`, or the failure it
// sent. Exit notices that arrive meanwhile are queued for read_exit().
Result<protocol::Message, SpawnFailure> await_reply(int channel, protocol::Type expected,
                                                    std::deque<SandboxExit>& pending_exits) {
  for (;;) {
    auto received = protocol::receive_message(channel);
    if (!received.ok()) return spawner_gone(received.error().message);
    if (!received->has_value()) return spawner_gone("exited unexpectedly");
    protocol::Message& message = **received;
    if (message.type == protocol::Type::kExited) {
      if (auto exit = protocol::decode_exit(message.payload)) pending_exits.push_back(*exit);
      continue;
    }
    if (message.type == protocol::Type::kSpawnFailed) {
      auto failure = protocol::decode_failure(message.payload);
      if (!failure) return spawner_gone("malformed failure reply");
      return std::move(*failure);
    }
    if (message.type != expected) return spawner_gone("unexpected message");
    return std::move(message);
  }
}

}  // namespace

Result<void> Sandbox::signal(int signal_number) const {
  if (!pidfd_) return make_error(Errc::kInvalidArgument, "no sandbox");
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal_number, nullptr, 0U) != 0) {
    return Error::from_errno("pidfd_send_signal");
  }
  return {};
}

Result<Spawner> Spawner::start(const SpawnerConfig& config) {
  if (config.seccomp.instructions.empty()) {
    return make_error(Errc::kInvalidArgument, "seccomp: no filter program (it is not optional)");
  }
  auto threads = thread_count();
  if (!threads.ok()) return threads.error();
  if (*threads != 1) {
    return make_error(Errc::kInternal,
                      "the spawner must be started before any thread exists (DESIGN.md "
                      "\"Processes\")");
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Error::from_errno("socketpair");
  }
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno("fork");
  if (pid == 0) {
    ours.reset();
    spawner::run(theirs.get(), config, parent);
  }
  return Spawner(pid, std::move(ours));
}

Spawner::Spawner(Spawner&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      channel_(std::move(other.channel_)),
      pending_exits_(std::move(other.pending_exits_)) {}

Spawner& Spawner::operator=(Spawner&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
    channel_ = std::move(other.channel_);
    pending_exits_ = std::move(other.pending_exits_);
  }
  return *this;
}

Spawner::~Spawner() {
  stop();
}

void Spawner::stop() noexcept {
  channel_.reset();  // the spawner SIGKILLs its sandboxes and exits promptly
  if (pid_ > 0) {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

Result<Sandbox, SpawnFailure> Spawner::spawn(const SandboxSpec& spec, const SandboxStdio& stdio) {
  if (!channel_) return spawner_gone("not running");
  const int fds[3] = {stdio.in, stdio.out, stdio.err};
  auto sent = protocol::send_message(channel_.get(), protocol::Type::kSpawn,
                                     protocol::encode_spec(spec), fds);
  if (!sent.ok()) return SpawnFailure{kExitSetupFailed, sent.error().message, {}};
  return await_spawned();
}

Result<Session, SpawnFailure> Spawner::spawn_session(int sandbox_pidfd, const SandboxSpec& spec,
                                                     const SandboxStdio& stdio) {
  if (!channel_) return spawner_gone("not running");
  const int fds[4] = {stdio.in, stdio.out, stdio.err, sandbox_pidfd};
  auto sent = protocol::send_message(channel_.get(), protocol::Type::kSpawnSession,
                                     protocol::encode_spec(spec), fds);
  if (!sent.ok()) return SpawnFailure{kExitSetupFailed, sent.error().message, {}};
  auto spawned = await_spawned();
  if (!spawned.ok()) return spawned.error();
  // A session's reply carries its pidfd and, when watched, its bypass listener.
  return Session(spawned->pid(), UniqueFd(::fcntl(spawned->pidfd(), F_DUPFD_CLOEXEC, 0)),
                 spawned->take_bypass_listener(), spawned->warnings());
}

Result<void> Session::signal(int signal_number) const {
  if (!pidfd_) return make_error(Errc::kInvalidArgument, "no session");
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal_number, nullptr, 0U) != 0) {
    return Error::from_errno("pidfd_send_signal");
  }
  return {};
}

Result<Sandbox, SpawnFailure> Spawner::await_spawned() {
  auto reply = await_reply(channel_.get(), protocol::Type::kSpawned, pending_exits_);
  if (!reply.ok()) return reply.error();
  protocol::Message& message = *reply;
  auto spawned = protocol::decode_spawned(message.payload);
  if (!spawned) return spawner_gone("malformed spawn reply");
  // The pidfd, then each optional fd the flags announce, in this order.
  const bool present[] = {spawned->has_listener, spawned->has_bypass_monitor,
                          spawned->has_socket_diag};
  const auto announced = std::count(std::begin(present), std::end(present), true);
  if (message.fds.size() != static_cast<size_t>(1 + announced)) {
    return spawner_gone("malformed spawn reply");
  }
  UniqueFd optional[3];
  for (size_t i = 0, next = 1; i < 3; ++i) {
    if (present[i]) optional[i] = std::move(message.fds[next++]);
  }
  return Sandbox(spawned->pid, std::move(message.fds[0]), std::move(optional[0]),
                 std::move(optional[1]), std::move(optional[2]), std::move(spawned->warnings));
}

Result<UniqueFd> Spawner::connect_in_sandbox(int sandbox_pidfd, const sockaddr_storage& address) {
  if (!channel_) return make_error(Errc::kUnavailable, "spawner: not running");
  const size_t length = address.ss_family == AF_INET    ? sizeof(sockaddr_in)
                        : address.ss_family == AF_INET6 ? sizeof(sockaddr_in6)
                                                        : 0;
  if (length == 0) return make_error(Errc::kInvalidArgument, "connect: not an IP address");
  const int fds[1] = {sandbox_pidfd};
  auto sent = protocol::send_message(
      channel_.get(), protocol::Type::kConnect,
      std::string_view(reinterpret_cast<const char*>(&address), length), fds);
  if (!sent.ok()) return sent.error();
  auto reply = await_reply(channel_.get(), protocol::Type::kConnected, pending_exits_);
  if (!reply.ok()) return make_error(Errc::kUnavailable, reply.error().message);
  if (reply->fds.size() != 1) return make_error(Errc::kInternal, "spawner: malformed reply");
  return std::move(reply->fds[0]);
}

Result<std::optional<SandboxExit>> Spawner::read_exit() {
  if (!pending_exits_.empty()) {
    const SandboxExit exit = pending_exits_.front();
    pending_exits_.pop_front();
    return std::optional<SandboxExit>(exit);
  }
  if (!channel_) return make_error(Errc::kUnavailable, "spawner: not running");
  for (;;) {
    pollfd ready{channel_.get(), POLLIN, 0};
    if (::poll(&ready, 1, 0) <= 0) return std::optional<SandboxExit>();
    auto received = protocol::receive_message(channel_.get());
    if (!received.ok()) return received.error();
    if (!received->has_value()) return make_error(Errc::kUnavailable, "spawner: exited");
    if ((*received)->type != protocol::Type::kExited) continue;  // nothing else is unsolicited
    auto exit = protocol::decode_exit((*received)->payload);
    if (!exit) return make_error(Errc::kParse, "spawner: malformed exit notice");
    return std::optional<SandboxExit>(*exit);
  }
}

}  // namespace openshell::runtime
