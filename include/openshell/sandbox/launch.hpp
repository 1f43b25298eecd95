// Launching the main command of `openshell run` and `openshell sandbox`: the same isolation,
// prepared in the same order, so the two commands cannot drift apart.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/runtime/bypass_monitor.hpp"
#include "openshell/runtime/credentials.hpp"
#include "openshell/runtime/pty.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/supervisor.hpp"
#include "openshell/sandbox/static_setup.hpp"

namespace openshell::sandbox {

// What must exist before the first thread: the PTY (when interactive), Landlock prepared, the
// seccomp programs compiled (the deny filter and the bypass monitor's), the spawner forked, and
// the lifecycle signals blocked.
struct Isolation {
  std::optional<runtime::Pty> pty;
  runtime::Spawner spawner;
  runtime::LifecycleSignals signals;
  // The SSH server's own spawner for its sessions (prepare_isolation's `session_spawner`).
  std::optional<runtime::Spawner> sessions;
};

// Errors are logged; nullopt means nothing was started (exit kExitSetupFailed).
std::optional<Isolation> prepare_isolation(const StaticPolicy& policy, const Directories& dirs,
                                           const std::string& ca_bundle, bool tty,
                                           core::Logger& log, bool session_spawner = false);

struct MainCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // --env KEY=VALUE
  runtime::SandboxNetwork network = runtime::SandboxNetwork::kNone;
  std::string ca_bundle;  // the CA variables point at it when set
  bool tty = false;
  bool rootless = false;
};

// The spawn request for the main command: its environment (spec §5.4 as adapted), the program
// resolved with the child's own PATH, its identity and directories. Errors name the program.
Result<runtime::SandboxSpec> main_command_spec(const MainCommand& command,
                                               const runtime::Credentials& credentials,
                                               const Directories& dirs);

// A started sandbox, with the caller's terminal in raw mode while a PTY relays it, and the
// bypass monitor watching it (none for a host-network sandbox). Stop the monitor only after the
// sandbox has ended (see BypassMonitor::stop).
struct Started {
  runtime::Sandbox sandbox;
  std::optional<runtime::RawTerminal> raw_terminal;
  std::unique_ptr<runtime::BypassMonitor> bypass_monitor;
  // Who connected each socket to the proxy listener, as the monitor saw it: for the identity
  // lookup (runtime::IdentityResolver).
  std::shared_ptr<runtime::ConnectOwners> connect_owners;
};

// Logs each attempt as one Detection Finding naming the executable and the destination.
runtime::BypassMonitor::Report log_bypass_attempts(core::Logger& log);
// Logs what the rate limit kept out of the log, once the sandbox has ended.
void log_bypass_totals(const runtime::BypassMonitor& monitor, core::Logger& log);

// Spawns the main command (on the PTY when there is one) and starts its bypass monitor, which
// hands each attempt to `on_bypass`; warnings and failures are logged. Failure gives the exit
// code to end with.
std::variant<Started, int> start_main_command(Isolation& isolation,
                                              const runtime::SandboxSpec& spec, core::Logger& log,
                                              runtime::BypassMonitor::Report on_bypass);

}  // namespace openshell::sandbox
