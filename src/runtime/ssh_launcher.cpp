// Running SSH commands as sandbox sessions and collecting their exit notices.
#include "ssh_launcher.hpp"

#include <poll.h>

#include <chrono>
#include <vector>

namespace openshell::runtime::ssh {
namespace {

// How often a waiting connection looks at its stop flag.
constexpr int kWaitSliceMs = 100;

}  // namespace

Result<Session, SpawnFailure> SessionLauncher::spawn(const std::optional<std::string>& command,
                                                     bool tty, const SandboxStdio& stdio) {
  SandboxSpec spec = template_;
  spec.program = "/bin/sh";
  if (command) {
    spec.argv = {"/bin/sh", "-c", *command};
  } else {
    spec.argv =
        tty ? std::vector<std::string>{"/bin/sh", "-i"} : std::vector<std::string>{"/bin/sh"};
  }
  spec.tty = tty;
  const std::lock_guard lock(mutex_);
  return spawner_.spawn_session(sandbox_pidfd_, spec, stdio);
}

bool SessionLauncher::collect_locked() {
  for (;;) {
    auto exit = spawner_.read_exit();
    if (!exit.ok()) return false;
    if (!exit->has_value()) return true;
    exits_[(*exit)->pid] = (*exit)->wait_status;
  }
}

std::optional<int> SessionLauncher::wait(pid_t pid, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    int event_fd = -1;
    {
      const std::lock_guard lock(mutex_);
      const bool alive = collect_locked();
      if (auto found = exits_.find(pid); found != exits_.end()) {
        const int status = found->second;
        exits_.erase(found);
        return status;
      }
      if (!alive) return std::nullopt;
      event_fd = spawner_.event_fd();
    }
    pollfd ready{event_fd, POLLIN, 0};
    ::poll(&ready, 1, kWaitSliceMs);
  }
  return std::nullopt;
}

}  // namespace openshell::runtime::ssh
