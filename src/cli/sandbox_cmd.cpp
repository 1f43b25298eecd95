// `openshell sandbox`: flags only; the composition lives in the sandbox layer. Exit code: the
// child's (128+N for signal N, 124 timeout, 125 our own failure, 126/127 not runnable).
#include <fmt/core.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "log_flags.hpp"
#include "openshell/control/endpoint.hpp"
#include "openshell/runtime/child_env.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/ssh_server.hpp"
#include "openshell/sandbox/sandbox.hpp"

namespace openshell::cli {

namespace {

struct SandboxFlags {
  sandbox::SandboxOptions options;
  double timeout = 0;
  std::optional<int64_t> ssh_idle_timeout;
  LogFlags log;
};

int run_sandbox_command(SandboxFlags& flags) {
  auto installed = flags.log.install();
  if (!installed.ok()) {
    fmt::print(stderr, "openshell sandbox: {}\n", installed.error().message);
    return runtime::kExitSetupFailed;
  }
  flags.options.timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout * 1000));
  if (flags.ssh_idle_timeout) {
    flags.options.ssh_idle_timeout = std::chrono::seconds(*flags.ssh_idle_timeout);
  }
  return sandbox::run(flags.options, *installed);
}

}  // namespace

void add_sandbox_command(CLI::App& root, Action& action) {
  auto flags = std::make_shared<SandboxFlags>();
  sandbox::SandboxOptions& o = flags->options;
  CLI::App* app = root.add_subcommand(
      "sandbox",
      "Run a command in a sandbox whose only way out is an in-process egress proxy: the policy's "
      "network sections decide every connection, by destination and by calling binary");
  app->add_option("--policy", o.policy_file,
                  "Policy file (YAML or JSON): network sections go to the proxy, "
                  "filesystem_policy/landlock/process to the runtime. Without it: deny-all")
      ->check(CLI::ExistingFile);
  app->add_option("--control", o.control,
                  "Serve the control API on unix:PATH (socket 0600): `ctl push-policy` "
                  "hot-reloads the network policy; static sections cannot change");
  app->add_option("--workdir", o.workdir,
                  "Working directory of the command (read-write when include_workdir)");
  app->add_option("--user", o.user,
                  "Run as this user (name or number; overrides process.run_as_user; root only)");
  app->add_option("--group", o.group,
                  "Run as this group (name or number; overrides process.run_as_group; root only)");
  app->add_option("--timeout", flags->timeout,
                  "Seconds before the command is sent SIGTERM (then SIGKILL); exit code 124")
      ->check(CLI::Range(0.0, 31536000.0));
  auto* tty =
      app->add_flag("--tty", o.tty, "Give the command a PTY even if stdio is not a terminal");
  app->add_flag("--no-tty", o.no_tty, "Pass stdio through even if it is a terminal")->excludes(tty);
  app->add_option("--env", o.env, "KEY=VALUE for the command's environment (repeatable)")
      ->allow_extra_args(false);
  app->add_option("--credential", o.credentials,
                  "KEY=ENV_VAR or KEY=@FILE: a secret the proxy injects into requests; the "
                  "command sees KEY=openshell:resolve:env:KEY (repeatable)")
      ->allow_extra_args(false);
  app->add_flag("--allow-loopback-upstream", o.allow_loopback_upstream,
                "Let the SSRF guard admit loopback upstreams (local testing only; warns)");
  app->add_option("--inference-routes", o.inference_routes_file,
                  "Inference routes file (YAML or JSON) served at inference.local; see "
                  "INFERENCE ROUTES in openshell-proxy(1)")
      ->check(CLI::ExistingFile);
  app->add_option("--upstream-ca", o.upstream_ca_paths,
                  "Extra roots (PEM) trusted for upstream certificates, beside the system bundle "
                  "(repeatable)")
      ->check(CLI::ExistingFile)
      ->allow_extra_args(false);
  auto* ssh = app->add_option("--ssh", o.ssh,
                              "Serve SSH on unix:PATH (socket 0600, its directory 0700) or "
                              "tcp:HOST:PORT (an IP address, IPv6 in brackets; port 0: any free "
                              "one, logged): sessions run inside the sandbox with its isolation");
  app->add_option("--ssh-authorized-keys", o.ssh_authorized_keys,
                  "OpenSSH authorized_keys file: the keys --ssh accepts (required with --ssh)")
      ->check(CLI::ExistingFile)
      ->needs(ssh);
  app->add_option("--ssh-host-key", o.ssh_host_key,
                  "OpenSSH private key file (mode 0600 or stricter) used as the host key; "
                  "default: an Ed25519 key made in memory")
      ->check(CLI::ExistingFile)
      ->needs(ssh);
  app->add_option("--ssh-idle-timeout", flags->ssh_idle_timeout,
                  "Seconds an SSH connection with no open channel and no traffic is kept (0: "
                  "forever)")
      ->check(CLI::Range(int64_t{0}, int64_t{31536000}))
      ->default_str(std::to_string(runtime::kSshDefaultIdleTimeout.count()))
      ->needs(ssh);
  flags->log.level = "warn";
  flags->log.add_to(*app);
  app->get_option("--log-level")->default_str("warn");
  app->add_option("command", o.command, "The command and its arguments (after --)")->required();
  app->callback([&action, flags] {
    const std::string& control = flags->options.control;
    if (!control.empty()) {
      auto endpoint = control::parse_endpoint(control);
      if (!endpoint.ok()) throw CLI::ValidationError("--control", endpoint.error().message);
      if (endpoint->kind != control::Endpoint::Kind::kUnix) {
        throw CLI::ValidationError("--control", "sandbox serves control on unix:PATH only");
      }
    }
    if (!flags->options.ssh.empty()) {
      if (auto listen = runtime::parse_ssh_listen(flags->options.ssh); !listen.ok()) {
        throw CLI::ValidationError("--ssh", listen.error().message);
      }
      if (flags->options.ssh_authorized_keys.empty()) {
        throw CLI::ValidationError("--ssh", "needs --ssh-authorized-keys FILE");
      }
    }
    for (const std::string& assignment : flags->options.env) {
      if (auto checked = runtime::check_env_assignment(assignment); !checked.ok()) {
        throw CLI::ValidationError("--env", checked.error().message);
      }
    }
    action = [flags] { return run_sandbox_command(*flags); };
  });
}

}  // namespace openshell::cli
