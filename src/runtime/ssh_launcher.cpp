// Running SSH requests as sandbox sessions and collecting their exit notices.
#include "ssh_launcher.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <unistd.h>

#include <string_view>

namespace openshell::runtime::ssh {
namespace {

std::string_view key_of(std::string_view assignment) {
  return assignment.substr(0, assignment.find('='));
}

}  // namespace

std::vector<std::string> merge_environment(std::vector<std::string> base,
                                           const std::vector<std::string>& overrides) {
  for (const std::string& entry : overrides) {
    bool replaced = false;
    for (std::string& existing : base) {
      if (key_of(existing) == key_of(entry)) {
        existing = entry;
        replaced = true;
      }
    }
    if (!replaced) base.push_back(entry);
  }
  return base;
}

SessionLauncher::SessionLauncher(Spawner spawner, int sandbox_pidfd, SandboxSpec session_template,
                                 BypassMonitor::Report report, BypassMonitorOptions monitor_options)
    : spawner_(std::move(spawner)),
      sandbox_pidfd_(sandbox_pidfd),
      template_(std::move(session_template)),
      shell_(::access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh"),
      report_(report ? std::move(report) : BypassMonitor::Report([](const BypassAttempt&) {})),
      monitor_options_(std::move(monitor_options)) {}

Result<Session, SpawnFailure> SessionLauncher::spawn(const SessionCommand& command,
                                                     const SandboxStdio& stdio) {
  SandboxSpec spec = template_;
  spec.env = merge_environment(std::move(spec.env), command.env);
  spec.tty = command.tty;
  spec.program = shell_;
  switch (command.kind) {
    case SessionCommand::Kind::kExec:
      spec.argv = {shell_, "-c", command.command};
      break;
    case SessionCommand::Kind::kShell:
      // Interactive on a PTY; without one, a plain shell reading its commands from stdin (what
      // VS Code's remote server expects).
      spec.argv =
          command.tty ? std::vector<std::string>{shell_, "-i"} : std::vector<std::string>{shell_};
      break;
    case SessionCommand::Kind::kSftp:
      spec.program = kSftpServer;
      spec.argv = {"sftp-server"};
      break;
  }
  const std::lock_guard lock(mutex_);
  std::erase_if(monitors_, [](const auto& monitor) { return monitor->finished(); });
  auto session = spawner_.spawn_session(sandbox_pidfd_, spec, stdio);
  if (!session.ok()) return session;
  if (UniqueFd listener = session->take_bypass_listener()) {
    // Always answered, or the session's first connect() would wait in the kernel for good.
    auto monitor = BypassMonitor::start(std::move(listener), report_, monitor_options_);
    if (!monitor.ok()) {
      (void)session->signal(SIGKILL);
      discarded_.insert(session->pid());
      return SpawnFailure{kExitSetupFailed, "bypass monitor: " + monitor.error().message, {}};
    }
    monitors_.push_back(std::move(*monitor));
  }
  return session;
}

Result<UniqueFd> SessionLauncher::connect(const sockaddr_storage& address) {
  auto socket = [&] {
    const std::lock_guard lock(mutex_);
    return spawner_.connect_in_sandbox(sandbox_pidfd_, address);
  }();
  if (!socket.ok()) return socket;
  const int one = 1;
  ::setsockopt(socket->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(socket->get(), F_SETFL, ::fcntl(socket->get(), F_GETFL) | O_NONBLOCK);
  return socket;
}

bool SessionLauncher::collect_locked() {
  for (;;) {
    auto exit = spawner_.read_exit();
    if (!exit.ok()) return false;
    if (!exit->has_value()) return true;
    if (discarded_.erase((*exit)->pid) == 0) exits_[(*exit)->pid] = (*exit)->wait_status;
  }
}

std::optional<int> SessionLauncher::exit_status(pid_t pid, bool& gone) {
  const std::lock_guard lock(mutex_);
  gone = !collect_locked();
  const auto found = exits_.find(pid);
  if (found == exits_.end()) return std::nullopt;
  const int status = found->second;
  exits_.erase(found);
  gone = false;
  return status;
}

void SessionLauncher::discard(pid_t pid) {
  const std::lock_guard lock(mutex_);
  if (exits_.erase(pid) == 0) discarded_.insert(pid);
}

int SessionLauncher::event_fd() {
  const std::lock_guard lock(mutex_);
  return spawner_.event_fd();
}

}  // namespace openshell::runtime::ssh
