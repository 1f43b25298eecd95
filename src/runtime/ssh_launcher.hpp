// The SSH server's sessions: its own spawner, shared by the connection threads (one request at a
// time), and the exit notices every waiting connection picks its own from.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "openshell/runtime/spawner.hpp"

namespace openshell::runtime::ssh {

class SessionLauncher {
 public:
  SessionLauncher(Spawner spawner, int sandbox_pidfd, SandboxSpec session_template)
      : spawner_(std::move(spawner)),
        sandbox_pidfd_(sandbox_pidfd),
        template_(std::move(session_template)) {}

  // Runs `command` with `/bin/sh -c` as a session in the sandbox; nullopt: an interactive
  // `/bin/sh` (`-i` on a PTY). `tty`: the stdio is a PTY slave, made the controlling terminal.
  Result<Session, SpawnFailure> spawn(const std::optional<std::string>& command, bool tty,
                                      const SandboxStdio& stdio);

  // The session's wait status once it ended; nullopt when `stop` was raised first or the spawner
  // is gone.
  std::optional<int> wait(pid_t pid, const std::atomic<bool>& stop);

 private:
  // Moves every exit notice that arrived into exits_; false when the spawner is gone.
  bool collect_locked();

  std::mutex mutex_;
  Spawner spawner_;
  int sandbox_pidfd_;
  SandboxSpec template_;
  std::map<pid_t, int> exits_;
};

}  // namespace openshell::runtime::ssh
