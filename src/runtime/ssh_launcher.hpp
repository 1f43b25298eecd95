// The SSH server's sessions: its own spawner, shared by the connection threads (one request at a
// time), and the exit notices every connection picks its own from.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "openshell/runtime/bypass_monitor.hpp"
#include "openshell/runtime/spawner.hpp"

namespace openshell::runtime::ssh {

// Debian's SFTP server (package openssh-sftp-server), run inside the sandbox for `sftp` and
// OpenSSH 9's `scp`: libssh 0.10 has no SFTP server of its own.
inline constexpr const char* kSftpServer = "/usr/lib/openssh/sftp-server";

// What a session channel asked to run.
struct SessionCommand {
  enum class Kind { kShell, kExec, kSftp };
  Kind kind = Kind::kShell;
  std::string command;  // kExec: given to the shell's -c
  bool tty = false;     // stdio is a PTY slave, made the controlling terminal
  // KEY=VALUE entries added to the main process's environment (replacing the same keys).
  std::vector<std::string> env;
};

class SessionLauncher {
 public:
  // `report` and `monitor_options` serve each session's bypass monitor (see spawn()).
  SessionLauncher(Spawner spawner, int sandbox_pidfd, SandboxSpec session_template,
                  BypassMonitor::Report report, BypassMonitorOptions monitor_options);

  // Starts the session and, when the sandbox is watched, a bypass monitor for it (kept until it
  // ends by itself with the session's last process, or until the launcher goes).
  Result<Session, SpawnFailure> spawn(const SessionCommand& command, const SandboxStdio& stdio);

  // The session's wait status once it ended; nullopt while it runs. `gone` is set when the
  // spawner is gone (no status will ever come).
  std::optional<int> exit_status(pid_t pid, bool& gone);
  // A non-blocking TCP socket connected to `address` inside the sandbox (Spawner::
  // connect_in_sandbox), for direct-tcpip.
  Result<UniqueFd> connect(const sockaddr_storage& address);

  // The session was killed and nobody will ask for its status: its notice is dropped.
  void discard(pid_t pid);
  // Readable when an exit notice may be waiting (poll it; exit_status() collects).
  int event_fd();

 private:
  // Moves every exit notice that arrived into exits_; false when the spawner is gone.
  bool collect_locked();

  std::mutex mutex_;
  Spawner spawner_;
  int sandbox_pidfd_;
  SandboxSpec template_;
  std::string shell_;  // bash when the host has it (the sandbox sees the host's /bin), else sh
  std::map<pid_t, int> exits_;
  std::set<pid_t> discarded_;
  BypassMonitor::Report report_;
  BypassMonitorOptions monitor_options_;
  std::vector<std::unique_ptr<BypassMonitor>> monitors_;
};

// `base` with each of `overrides` (KEY=VALUE) replacing the entry of the same key, or added.
std::vector<std::string> merge_environment(std::vector<std::string> base,
                                           const std::vector<std::string>& overrides);

}  // namespace openshell::runtime::ssh
