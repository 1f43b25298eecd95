// The spawner (DESIGN.md "Processes"): a single-threaded process forked before any thread exists.
// It creates every sandbox on request over a SOCK_SEQPACKET socketpair: new pid, mount, network,
// IPC and UTS namespaces (plus a user namespace when rootless), an init that reaps and forwards
// signals, and the main process set up exactly in the order of runtime-spec §4.3.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/runtime/landlock.hpp"
#include "openshell/runtime/seccomp.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

// Where the proxy listens inside a sandbox's network namespace (DESIGN.md "Network path").
inline constexpr uint16_t kSandboxProxyPort = 3128;

enum class SandboxNetwork : uint8_t {
  kNone,   // a new network namespace holding only `lo` (up)
  kProxy,  // kNone, plus a TCP listener on 127.0.0.1:3128 inside it, handed to the caller
  kHost,   // the caller's network namespace: no network isolation at all
};

// One sandbox and its main process. Everything is resolved by the caller: the spawner and the
// child only copy and execute it (no NSS, no PATH search, no allocation after fork).
struct SandboxSpec {
  std::string program;            // absolute path, given to execve as is
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // the complete environment, "KEY=VALUE"
  std::string workdir;            // chdir'd to before the privilege drop; empty: stay
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups (empty: none); ignored when rootless
  // Rootless: a user namespace maps the caller's uid and gid onto themselves (one id each, so
  // `uid`/`gid` must be the caller's and supplementary groups cannot be set).
  bool user_namespace = false;
  SandboxNetwork network = SandboxNetwork::kNone;
  bool tty = false;  // stdin is a terminal slave: it becomes the controlling terminal
  std::vector<std::string> private_dirs;  // a fresh writable tmpfs on each (e.g. /tmp)
  std::vector<std::string> masked_dirs;   // an empty read-only tmpfs on each (e.g. /run)
};

// What the spawner holds for its whole life. The seccomp program is compiled before the fork
// (DESIGN.md "Processes"); the children only load it.
//
// Landlock is the exception, for a kernel reason: a rule on a directory that is later mounted
// over does not cover the new mount (Landlock ignores hidden mount points), so rules built from
// the host's /proc and /tmp would deny the sandbox its own fresh /proc and private /tmp. Each
// sandbox's init therefore opens the paths and builds the ruleset inside its mount namespace,
// after its mounts and before it forks the main process, which only restricts itself. Call
// prepare_landlock() in the caller first as well: it reports degradations and fails a
// hard_requirement early, with the caller's logger.
struct SpawnerConfig {
  // nullopt: no Landlock (best_effort found none, and warned). hard_requirement: any failure to
  // build or apply the ruleset is fatal; best_effort: paths or rights that fail are skipped.
  std::optional<FilesystemRules> landlock;
  SeccompProgram seccomp;  // must not be empty: seccomp is never optional
  // The bypass monitor's notification filter (build_bypass_filter), installed in every sandbox
  // with a network namespace of its own. nullopt: no monitor.
  std::optional<SeccompProgram> bypass_filter;
};

// The borrowed stdio of a main process (the caller's own 0/1/2, or a PTY slave three times).
struct SandboxStdio {
  int in = 0;
  int out = 1;
  int err = 2;
};

// Why a sandbox did not start, with the exit code `run` reports: 125 when openshell (a namespace,
// mount, Landlock, seccomp, the privilege drop...) failed, 126 when the program could not be
// executed, 127 when it does not exist.
struct SpawnFailure {
  int exit_code = 125;
  std::string message;  // "step: strerror" of the step that failed
  std::vector<std::string> warnings;
};

inline constexpr int kExitSetupFailed = 125;
inline constexpr int kExitCannotExecute = 126;
inline constexpr int kExitNotFound = 127;

// A running sandbox, as seen from the caller.
class Sandbox {
 public:
  Sandbox() = default;
  Sandbox(pid_t pid, UniqueFd pidfd, UniqueFd listener, UniqueFd bypass_listener,
          UniqueFd socket_diag, std::vector<std::string> warnings)
      : pid_(pid),
        pidfd_(std::move(pidfd)),
        listener_(std::move(listener)),
        bypass_listener_(std::move(bypass_listener)),
        socket_diag_(std::move(socket_diag)),
        warnings_(std::move(warnings)) {}

  // The sandbox's init (pid 1 inside), as numbered in the caller's pid namespace: its
  // /proc/<pid>/net/tcp lists the sandbox's sockets.
  pid_t pid() const { return pid_; }
  // A pidfd of the init: signals reach exactly this sandbox even after the pid is reused.
  int pidfd() const { return pidfd_.get(); }
  // SandboxNetwork::kProxy: the listening socket on 127.0.0.1:3128 inside the sandbox
  // (blocking, close-on-exec). Taken once.
  UniqueFd take_listener() { return std::move(listener_); }
  // The seccomp user-notification listener of the bypass monitor's filter (a new network
  // namespace and a SpawnerConfig with a bypass filter), for a BypassMonitor. Taken once. While
  // it is open and unanswered the sandbox's connect() calls wait; once closed they fail ENOSYS,
  // so hold it for the sandbox's whole life.
  UniqueFd take_bypass_listener() { return std::move(bypass_listener_); }
  // SandboxNetwork::kProxy: a NETLINK_SOCK_DIAG socket created inside the sandbox's network
  // namespace, for a SocketDiag; invalid when the kernel refused one. Taken once.
  UniqueFd take_socket_diag() { return std::move(socket_diag_); }
  // Degradations the child reported (e.g. best_effort Landlock that could not be applied).
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The init forwards SIGHUP/INT/QUIT/TERM/USR1/USR2/WINCH to the main process group; SIGKILL
  // ends the whole sandbox (the kernel kills every process of its pid namespace).
  Result<void> signal(int signal_number) const;

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd listener_;
  UniqueFd bypass_listener_;
  UniqueFd socket_diag_;
  std::vector<std::string> warnings_;
};

// A session process in a running sandbox (Spawner::spawn_session), as seen from the caller. It
// is the spawner's child: its end arrives as a SandboxExit with its pid (exit code, or signal).
class Session {
 public:
  Session() = default;
  Session(pid_t pid, UniqueFd pidfd, UniqueFd bypass_listener, std::vector<std::string> warnings)
      : pid_(pid),
        pidfd_(std::move(pidfd)),
        bypass_listener_(std::move(bypass_listener)),
        warnings_(std::move(warnings)) {}

  // Numbered in the caller's pid namespace.
  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Signals the session's program itself (not its process group).
  Result<void> signal(int signal_number) const;
  // The bypass monitor's seccomp listener for this session (and what it starts), when the
  // sandbox is watched; for BypassMonitor::start. Invalid once taken.
  UniqueFd take_bypass_listener() { return std::move(bypass_listener_); }

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd bypass_listener_;
  std::vector<std::string> warnings_;
};

// A sandbox's init ended: `wait_status` as waitpid reports it. The init exits with the main
// process's code, or 128+N when the main process died of signal N.
struct SandboxExit {
  pid_t pid = -1;
  int wait_status = 0;
};

class Spawner {
 public:
  // Forks the spawner. Refuses to run once the calling process has a second thread (fork would
  // copy locks other threads hold). The spawner dies with the caller (PR_SET_PDEATHSIG).
  static Result<Spawner> start(const SpawnerConfig& config);

  Spawner() = default;
  Spawner(Spawner&& other) noexcept;
  Spawner& operator=(Spawner&& other) noexcept;
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;
  // Closes the channel: the spawner SIGKILLs every sandbox it still runs, and is reaped.
  ~Spawner();

  // Creates a sandbox and waits until its main process has exec'd (or failed).
  Result<Sandbox, SpawnFailure> spawn(const SandboxSpec& spec, const SandboxStdio& stdio);

  // Starts a process inside the running sandbox whose init `sandbox_pidfd` is (Sandbox::pidfd(),
  // of this or another spawner of this process) and waits until it has exec'd
  // (or failed): it joins the sandbox's namespaces and gets exactly the main process's isolation
  // (privilege drop, Landlock, the seccomp deny filter, a new session, `stdio`, and a bypass
  // monitor filter of its own when the sandbox is watched: see child_session.cpp). `spec` is the
  // sandbox's own spec with another command, environment, working directory or `tty`. The
  // namespaces joined are the ones the init has (asked of the kernel; `network` and the mount lists
  // are ignored), and a `user_namespace` that does not match the sandbox's is refused. It dies with
  // the sandbox (its pid namespace) and with the spawner (parent-death signal).
  Result<Session, SpawnFailure> spawn_session(int sandbox_pidfd, const SandboxSpec& spec,
                                              const SandboxStdio& stdio);

  // A TCP socket connected to `address` from inside the network namespace of the running
  // sandbox whose init `sandbox_pidfd` is: a helper the spawner forks joins its user namespace
  // (rootless) and network namespace, connects and hands the socket back. For `ssh -L`: no
  // thread of this process may join the namespaces, and rootless not even the process.
  Result<UniqueFd> connect_in_sandbox(int sandbox_pidfd, const sockaddr_storage& address);

  // Readable when an exit notice (or the spawner's end) is waiting: poll it, then read_exit().
  int event_fd() const { return channel_.get(); }
  // The next exit notice without blocking: nullopt when none is waiting; an error when the
  // spawner is gone.
  Result<std::optional<SandboxExit>> read_exit();

  pid_t pid() const { return pid_; }

 private:
  Spawner(pid_t pid, UniqueFd channel) : pid_(pid), channel_(std::move(channel)) {}
  void stop() noexcept;
  // The answer to a spawn or session request; exit notices that arrive first are queued.
  Result<Sandbox, SpawnFailure> await_spawned();

  pid_t pid_ = -1;
  UniqueFd channel_;
  std::deque<SandboxExit> pending_exits_;  // notices that arrived while spawn() waited
};

}  // namespace openshell::runtime
