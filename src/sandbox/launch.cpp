// The launch steps `run` and `sandbox` share, in the order the runtime needs them.
#include "openshell/sandbox/launch.hpp"

#include <signal.h>
#include <unistd.h>

#include "openshell/core/events.hpp"
#include "openshell/runtime/child_env.hpp"
#include "openshell/runtime/landlock.hpp"
#include "openshell/runtime/sandbox_defaults.hpp"
#include "openshell/runtime/seccomp.hpp"

extern char** environ;

namespace openshell::sandbox {

namespace rt = openshell::runtime;

std::optional<Isolation> prepare_isolation(const StaticPolicy& policy, const Directories& dirs,
                                           const std::string& ca_bundle, bool tty,
                                           core::Logger& log, bool session_spawner) {
  std::optional<rt::Pty> pty;
  std::vector<std::string> devices;
  if (tty) {
    auto opened = rt::open_pty();
    if (!opened.ok()) {
      log.error("PTY: {}", opened.error().message);
      return std::nullopt;
    }
    pty = std::move(*opened);
    rt::copy_window_size(::isatty(0) == 1 ? 0 : 1, pty->master.get());
    devices = {pty->slave_path};
    // Programs open /dev/tty for prompts; a missing one must not fail a hard_requirement.
    if (::access("/dev/tty", F_OK) == 0) devices.emplace_back("/dev/tty");
  }

  // Prepared while still privileged and single-threaded: errors surface before anything runs.
  const rt::FilesystemRules rules = filesystem_rules(policy, dirs.workdir, ca_bundle, devices);
  auto landlock = rt::prepare_landlock(rules, log);
  if (!landlock.ok()) {
    log.error("{}", landlock.error().message);
    return std::nullopt;
  }
  auto seccomp = rt::build_seccomp(rt::SeccompOptions{});
  if (!seccomp.ok()) {
    log.error("{}", seccomp.error().message);
    return std::nullopt;
  }
  // Always on (DESIGN.md "Network path"): a monitor that cannot be built is a setup error.
  auto bypass_filter = rt::build_bypass_filter();
  if (!bypass_filter.ok()) {
    log.error("{}", bypass_filter.error().message);
    return std::nullopt;
  }
  rt::SpawnerConfig config;
  if (landlock->active()) config.landlock = rules;  // each sandbox's init builds its own
  config.seccomp = std::move(*seccomp);
  config.bypass_filter = std::move(*bypass_filter);
  auto spawner = rt::Spawner::start(config);
  if (!spawner.ok()) {
    log.error("spawner: {}", spawner.error().message);
    return std::nullopt;
  }
  std::optional<rt::Spawner> sessions;
  if (session_spawner) {
    auto started = rt::Spawner::start(config);
    if (!started.ok()) {
      log.error("SSH session spawner: {}", started.error().message);
      return std::nullopt;
    }
    sessions = std::move(*started);
  }
  // Before the first thread: every thread inherits the mask, the supervisor reads the signals.
  auto signals = rt::LifecycleSignals::block();
  if (!signals.ok()) {
    log.error("signals: {}", signals.error().message);
    return std::nullopt;
  }
  return Isolation{std::move(pty), std::move(*spawner), std::move(*signals), std::move(sessions)};
}

Result<rt::SandboxSpec> main_command_spec(const MainCommand& command,
                                          const rt::Credentials& credentials,
                                          const Directories& dirs) {
  rt::ChildEnvOptions env_options;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    env_options.inherited.emplace_back(*entry);
  }
  env_options.extra = command.env;
  env_options.user = credentials.user;
  env_options.home = home_for(credentials, dirs.workdir);
  env_options.shell = shell_for(credentials);
  env_options.tty = command.tty;
  env_options.proxy = command.network == rt::SandboxNetwork::kProxy;
  env_options.ca_bundle = command.ca_bundle;

  rt::SandboxSpec spec;
  spec.env = rt::build_child_env(env_options);
  std::string child_path(rt::kDefaultPath);
  for (const std::string& entry : spec.env) {
    if (entry.starts_with("PATH=")) child_path = entry.substr(5);
  }
  auto program = rt::resolve_program(command.argv.front(), child_path, dirs.cwd);
  if (!program.ok()) return program.error();
  spec.program = *program;
  spec.argv = command.argv;
  spec.workdir = dirs.cwd;
  spec.uid = credentials.uid;
  spec.gid = credentials.gid;
  spec.groups = credentials.groups;
  spec.user_namespace = command.rootless;
  spec.network = command.network;
  spec.tty = command.tty;
  spec.private_dirs = rt::default_private_dirs();
  spec.masked_dirs = rt::default_masked_dirs();
  return spec;
}

rt::BypassMonitor::Report log_bypass_attempts(core::Logger& log) {
  return [&log](const rt::BypassAttempt& attempt) {
    core::Event finding = core::events::bypass_finding(
        attempt.address, attempt.port, attempt.protocol, attempt.exe, attempt.pid, attempt.call);
    if (attempt.suppressed > 0) {
      finding.with_field("suppressed_before", std::to_string(attempt.suppressed));
    }
    log.emit(finding);
  };
}

void log_bypass_totals(const rt::BypassMonitor& monitor, core::Logger& log) {
  if (monitor.unreported() == 0) return;
  log.warn(
      "bypass monitor: {} attempts to leave the sandbox, {} of them not logged one by one "
      "(rate limit)",
      monitor.attempts(), monitor.unreported());
}

std::variant<Started, int> start_main_command(Isolation& isolation, const rt::SandboxSpec& spec,
                                              core::Logger& log,
                                              rt::BypassMonitor::Report on_bypass) {
  rt::SandboxStdio stdio;
  if (isolation.pty) {
    const int slave = isolation.pty->slave.get();
    stdio = {slave, slave, slave};
  }
  std::optional<rt::RawTerminal> raw;
  if (isolation.pty && ::isatty(0) == 1) {
    if (auto entered = rt::RawTerminal::enter(0); entered.ok()) raw.emplace(std::move(*entered));
  }
  auto sandbox = isolation.spawner.spawn(spec, stdio);
  if (!sandbox.ok()) {
    raw.reset();
    for (const std::string& warning : sandbox.error().warnings)
      log.warn("{}", warning);
    log.error("sandbox not started: {}", sandbox.error().message);
    return sandbox.error().exit_code;
  }
  for (const std::string& warning : sandbox->warnings())
    log.warn("{}", warning);
  std::unique_ptr<rt::BypassMonitor> monitor;
  auto owners = std::make_shared<rt::ConnectOwners>();
  if (rt::UniqueFd notifications = sandbox->take_bypass_listener()) {
    rt::BypassMonitorOptions options;
    if (spec.network == rt::SandboxNetwork::kProxy) {
      options.proxy_port = rt::kSandboxProxyPort;
      options.connect_owners = owners;
    }
    auto started =
        rt::BypassMonitor::start(std::move(notifications), std::move(on_bypass), options);
    if (!started.ok()) {
      raw.reset();
      (void)sandbox->signal(SIGKILL);
      log.error("sandbox stopped: {}", started.error().message);
      return rt::kExitSetupFailed;
    }
    monitor = std::move(*started);
  }
  return Started{std::move(*sandbox), std::move(raw), std::move(monitor), std::move(owners)};
}

}  // namespace openshell::sandbox
