// Launching the main command of `openshell run` and `openshell sandbox`: the same isolation,
// prepared in the same order, so the two commands cannot drift apart.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/runtime/credentials.hpp"
#include "openshell/runtime/pty.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/supervisor.hpp"
#include "openshell/sandbox/static_setup.hpp"

namespace openshell::sandbox {

// What must exist before the first thread: the PTY (when interactive), Landlock prepared, the
// seccomp program compiled, the spawner forked, and the lifecycle signals blocked.
struct Isolation {
  std::optional<runtime::Pty> pty;
  runtime::Spawner spawner;
  runtime::LifecycleSignals signals;
};

// Errors are logged; nullopt means nothing was started (exit kExitSetupFailed).
std::optional<Isolation> prepare_isolation(const StaticPolicy& policy, const Directories& dirs,
                                           const std::string& ca_bundle, bool tty,
                                           core::Logger& log);

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

// A started sandbox, with the caller's terminal in raw mode while a PTY relays it.
struct Started {
  runtime::Sandbox sandbox;
  std::optional<runtime::RawTerminal> raw_terminal;
};

// Spawns the main command (on the PTY when there is one); warnings and failures are logged.
// Failure gives the exit code to end with.
std::variant<Started, int> start_main_command(Isolation& isolation,
                                              const runtime::SandboxSpec& spec, core::Logger& log);

}  // namespace openshell::sandbox
