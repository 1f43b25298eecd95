// `openshell run`: the isolation runtime alone (DESIGN.md, first table). Loads the static
// sections of a policy (filesystem_policy, landlock, process), prepares Landlock and seccomp,
// forks the spawner before any thread exists, creates the sandbox, relays its egress when
// --network proxy:... asks for it, and exits with the child's code (124 timeout, 125 our own
// failure, 126/127 the program could not be run).
#include <fmt/core.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "log_flags.hpp"
#include "openshell/core/events.hpp"
#include "openshell/core/proxy_protocol.hpp"
#include "openshell/policy/loader.hpp"
#include "openshell/runtime/child_env.hpp"
#include "openshell/runtime/credentials.hpp"
#include "openshell/runtime/egress_relay.hpp"
#include "openshell/runtime/pty.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/supervisor.hpp"
#include "openshell/sandbox/launch.hpp"
#include "openshell/sandbox/static_setup.hpp"

namespace openshell::cli {
namespace {

namespace rt = openshell::runtime;

struct RunFlags {
  std::string policy_file;
  std::string network = "none";
  bool allow_host_network = false;
  std::string identity_key_file;
  std::string workdir;
  std::string user;
  std::string group;
  double timeout = 0;
  bool tty = false;
  bool no_tty = false;
  std::vector<std::string> env;
  std::string ca_bundle;
  LogFlags log;
  std::vector<std::string> command;
  std::optional<rt::EgressTarget> proxy;  // set by the callback for proxy:... networks
};

int run_sandbox(RunFlags& flags) {
  auto installed = flags.log.install();
  if (!installed.ok()) {
    fmt::print(stderr, "openshell run: {}\n", installed.error().message);
    return rt::kExitSetupFailed;
  }
  core::Logger& log = **installed;
  if (flags.network == "host") {
    log.warn(
        "--network host: the sandbox shares the host's network namespace; nothing limits "
        "its connections");
  }

  std::string policy_text;
  if (!flags.policy_file.empty()) {
    auto text = sandbox::read_policy_text(flags.policy_file);
    if (!text) {
      log.error("{}: cannot read the policy file", flags.policy_file);
      return rt::kExitSetupFailed;
    }
    policy_text = std::move(*text);
  }
  const auto policy = sandbox::load_static_policy(flags.policy_file, policy_text, log);
  if (policy && policy->has_network_policies) {
    log.info(
        "{}: network_policies are the proxy's to enforce; `run` uses only filesystem_policy, "
        "landlock and process",
        flags.policy_file);
  }
  if (!policy) {
    log.error("{}: policy not loaded; nothing was run", flags.policy_file);
    return rt::kExitSetupFailed;
  }
  const bool rootless = ::geteuid() != 0;
  auto credentials = sandbox::sandbox_credentials(flags.user, flags.group, *policy, rootless, log);
  if (!credentials.ok()) {
    log.error("{}", credentials.error().message);
    return rt::kExitSetupFailed;
  }

  // The workdir: --workdir (it then joins read_write when include_workdir says so), else the
  // caller's own directory, kept as the child's cwd but granted nothing.
  const auto dirs = sandbox::working_directory(flags.workdir, log);
  if (!dirs) return rt::kExitSetupFailed;

  std::string ca_bundle;
  if (!flags.ca_bundle.empty()) {
    ca_bundle = sandbox::canonical_or_empty(flags.ca_bundle);
    if (ca_bundle.empty()) {
      log.error("--ca-bundle {}: no such file", flags.ca_bundle);
      return rt::kExitSetupFailed;
    }
    if (auto dir = sandbox::hidden_by_mounts(ca_bundle)) {
      log.error(
          "--ca-bundle {}: the sandbox gets its own {}, so the file would not be there; "
          "put the bundle elsewhere (e.g. under /etc or /usr/local/share)",
          ca_bundle, *dir);
      return rt::kExitSetupFailed;
    }
  }

  const bool tty = flags.tty || (!flags.no_tty && ::isatty(0) == 1 && ::isatty(1) == 1);
  auto isolation = sandbox::prepare_isolation(*policy, *dirs, ca_bundle, tty, log);
  if (!isolation) return rt::kExitSetupFailed;

  sandbox::MainCommand command;
  command.argv = flags.command;
  command.env = flags.env;
  command.network = flags.network == "host" ? rt::SandboxNetwork::kHost
                    : flags.proxy           ? rt::SandboxNetwork::kProxy
                                            : rt::SandboxNetwork::kNone;
  command.ca_bundle = ca_bundle;
  command.tty = tty;
  command.rootless = rootless;
  auto spec = sandbox::main_command_spec(command, *credentials, *dirs);
  if (!spec.ok()) {
    log.error("{}", spec.error().message);
    return rt::kExitNotFound;
  }
  auto launched_sandbox =
      sandbox::start_main_command(*isolation, *spec, log, sandbox::log_bypass_attempts(log));
  if (const int* failed = std::get_if<int>(&launched_sandbox)) return *failed;
  auto& [sandbox, raw, bypass_monitor, connect_owners] =
      std::get<sandbox::Started>(launched_sandbox);
  std::optional<rt::Pty>& pty = isolation->pty;
  if (pty) pty->slave.reset();  // the master sees the hang-up once the sandbox is gone

  core::ProcessInfo launched;
  launched.name = spec->program;
  launched.pid = sandbox.pid();
  launched.cmd_line = fmt::format("{}", fmt::join(spec->argv, " "));
  log.emit(core::events::process_launch(launched));

  std::unique_ptr<rt::EgressRelay> relay;
  if (flags.proxy) {
    rt::EgressRelayOptions relay_options;
    relay_options.target = *flags.proxy;
    if (!flags.identity_key_file.empty()) {
      // The same reader as the proxy's side, so both agree on what the key is.
      auto key = core::read_identity_key_file(flags.identity_key_file);
      if (!key.ok()) {
        raw.reset();
        log.error("{}", key.error().message);
        (void)sandbox.signal(SIGKILL);
        return rt::kExitSetupFailed;
      }
      relay_options.identity_key.assign(key->begin(), key->end());
    }
    relay_options.netns_pid = sandbox.pid();
    relay_options.root_pid = sandbox.pid();
    if (rt::UniqueFd diag = sandbox.take_socket_diag()) {
      relay_options.socket_diag = std::make_shared<rt::SocketDiag>(std::move(diag));
    }
    relay_options.connect_owners = connect_owners;
    auto relay_started =
        rt::EgressRelay::start(sandbox.take_listener().release(), std::move(relay_options), log);
    if (!relay_started.ok()) {
      raw.reset();
      log.error("egress relay: {}", relay_started.error().message);
      (void)sandbox.signal(SIGKILL);
      return rt::kExitSetupFailed;
    }
    relay = std::move(*relay_started);
  }

  rt::SuperviseOptions supervise_options;
  supervise_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout * 1000));
  if (pty) supervise_options.pty_master = pty->master.get();
  const int code =
      rt::supervise(isolation->spawner, sandbox, isolation->signals, supervise_options, log);
  raw.reset();
  if (relay) relay->stop();
  if (bypass_monitor) {
    bypass_monitor->stop();
    sandbox::log_bypass_totals(*bypass_monitor, log);
  }
  log.emit(core::events::process_exit(launched, code));
  return code;
}

}  // namespace

void add_run_command(CLI::App& root, Action& action) {
  auto flags = std::make_shared<RunFlags>();
  CLI::App* app = root.add_subcommand(
      "run",
      "Run a command in a sandbox: its own pid, mount and network namespaces, Landlock, seccomp, "
      "no privileges; egress only through a proxy, if any");
  app->add_option("--policy", flags->policy_file,
                  "Policy file (YAML or JSON); only filesystem_policy, landlock and process are "
                  "used. Without it: the restrictive default")
      ->check(CLI::ExistingFile);
  app->add_option("--network", flags->network,
                  "none (only loopback), proxy:tcp://HOST:PORT or proxy:unix:PATH (egress via "
                  "that proxy), or host (no isolation; needs --allow-host-network)")
      ->default_str("none");
  app->add_flag("--allow-host-network", flags->allow_host_network,
                "Permit --network host (the sandbox then shares the host's network)");
  app->add_option("--identity-key-file", flags->identity_key_file,
                  "Shared secret for the HMAC of the PROXY v2 identity header (proxy:tcp)")
      ->check(CLI::ExistingFile);
  app->add_option("--workdir", flags->workdir,
                  "Working directory of the command (read-write when include_workdir)");
  app->add_option("--user", flags->user,
                  "Run as this user (name or number; overrides process.run_as_user; root only)");
  app->add_option("--group", flags->group,
                  "Run as this group (name or number; overrides process.run_as_group; root only)");
  app->add_option("--timeout", flags->timeout,
                  "Seconds before the command is sent SIGTERM (then SIGKILL); exit code 124")
      ->check(CLI::Range(0.0, 31536000.0));
  auto* tty =
      app->add_flag("--tty", flags->tty, "Give the command a PTY even if stdio is not a terminal");
  app->add_flag("--no-tty", flags->no_tty, "Pass stdio through even if it is a terminal")
      ->excludes(tty);
  app->add_option("--env", flags->env, "KEY=VALUE for the command's environment (repeatable)")
      ->allow_extra_args(false);
  app->add_option("--ca-bundle", flags->ca_bundle,
                  "CA bundle the command should trust (SSL_CERT_FILE & co. point at it)")
      ->check(CLI::ExistingFile);
  flags->log.level = "warn";
  flags->log.add_to(*app);
  app->get_option("--log-level")->default_str("warn");
  app->add_option("command", flags->command, "The command and its arguments (after --)")
      ->required();
  app->callback([&action, flags] {
    if (flags->network == "host") {
      if (!flags->allow_host_network) {
        throw CLI::ValidationError("--network",
                                   "host shares the host's network: it needs "
                                   "--allow-host-network");
      }
    } else if (flags->network != "none") {
      auto target = rt::parse_network_proxy(flags->network);
      if (!target.ok()) throw CLI::ValidationError("--network", target.error().message);
      flags->proxy = std::move(*target);
    }
    if (!flags->identity_key_file.empty() && !flags->proxy) {
      throw CLI::ValidationError("--identity-key-file", "only with --network proxy:...");
    }
    for (const std::string& assignment : flags->env) {
      if (auto checked = rt::check_env_assignment(assignment); !checked.ok()) {
        throw CLI::ValidationError("--env", checked.error().message);
      }
    }
    action = [flags] { return run_sandbox(*flags); };
  });
}

}  // namespace openshell::cli
