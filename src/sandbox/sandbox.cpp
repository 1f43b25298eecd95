// `openshell sandbox`: spawner first (before any thread), then the proxy in this process with
// the interception CA written where the child can read it, the sandbox with its in-namespace
// listener adopted by the proxy, the runtime's identity lookup as the proxy's identity source,
// the policy's network sections pushed through LocalProxyControl, and the child supervised.
#include "openshell/sandbox/sandbox.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "credential_flags.hpp"
#include "denial_summary.hpp"
#include "openshell/control/endpoint.hpp"
#include "openshell/control/server.hpp"
#include "openshell/core/events.hpp"
#include "openshell/core/scope_exit.hpp"
#include "openshell/policy/loader.hpp"
#include "openshell/proxy/control.hpp"
#include "openshell/proxy/inference_routes.hpp"
#include "openshell/proxy/server.hpp"
#include "openshell/proxy/tls_interception.hpp"
#include "openshell/runtime/pty.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/supervisor.hpp"
#include "openshell/sandbox/launch.hpp"
#include "openshell/sandbox/static_setup.hpp"
#include "process_identity.hpp"
#include "session_credentials.hpp"
#include "ssh_setup.hpp"
#include "trust_dir.hpp"

namespace openshell::sandbox {

namespace {

namespace rt = openshell::runtime;

// The child has ended when the proxy stops: nothing is left worth draining.
constexpr std::chrono::milliseconds kProxyStopGrace{0};
// How long clients attached to the main process get to receive its exit status and leave before
// the SSH server closes what is left.
constexpr std::chrono::milliseconds kAttachedGoodbye{1'000};

std::unique_ptr<control::ControlServer> start_control(const std::string& endpoint,
                                                      proxy::ProxyControl& control,
                                                      core::Logger& log) {
  auto parsed = control::parse_endpoint(endpoint);
  if (!parsed.ok()) {
    log.error("--control {}: {}", endpoint, parsed.error().message);
    return nullptr;
  }
  control::ServerOptions options;
  options.endpoint = *parsed;
  auto started = control::ControlServer::start(std::move(options), control);
  if (!started.ok()) {
    log.error("control endpoint {}: {}", endpoint, started.error().message);
    return nullptr;
  }
  const std::string bound = (*started)->endpoint().to_string();
  log.emit(core::events::app_lifecycle(core::AppActivity::kStart, "control listening on " + bound)
               .with_field("control", bound));
  return std::move(*started);
}

}  // namespace

int run(const SandboxOptions& options, const std::shared_ptr<core::Logger>& logger) {
  core::Logger& log = *logger;

  // 1. The policy: static sections for the runtime, the whole text for the proxy's first push.
  std::string policy_text;
  if (!options.policy_file.empty()) {
    auto text = read_policy_text(options.policy_file);
    if (!text) {
      log.error("{}: cannot read the policy file", options.policy_file);
      return rt::kExitSetupFailed;
    }
    policy_text = std::move(*text);
  }
  const auto policy = load_static_policy(options.policy_file, policy_text, log);
  if (!policy) {
    log.error("{}: policy not loaded; nothing was run", options.policy_file);
    return rt::kExitSetupFailed;
  }
  const bool rootless = ::geteuid() != 0;
  auto credentials = sandbox_credentials(options.user, options.group, *policy, rootless, log);
  if (!credentials.ok()) {
    log.error("{}", credentials.error().message);
    return rt::kExitSetupFailed;
  }
  auto dirs = working_directory(options.workdir, log);
  if (!dirs) return rt::kExitSetupFailed;

  // 2. Where the trust files will be: Landlock must know the path before the spawner forks.
  auto trust = TrustDir::create();
  if (!trust.ok()) {
    log.error("{}", trust.error().message);
    return rt::kExitSetupFailed;
  }
  const std::string ca_path = trust->file("ca.pem");
  const std::string bundle_path = trust->file("ca-bundle.pem");
  if (auto written = proxy::tls::write_pem_file(bundle_path, ""); !written.ok()) {
    log.error("{}", written.error().message);
    return rt::kExitSetupFailed;
  }

  const bool tty = options.tty || (!options.no_tty && ::isatty(0) == 1 && ::isatty(1) == 1);
  // 3. Security layers and the spawner, while this process is single-threaded.
  auto isolation = prepare_isolation(*policy, *dirs, bundle_path, tty, log, !options.ssh.empty());
  if (!isolation) return rt::kExitSetupFailed;

  // 4. The interception CA (threads from here on) and the files the child trusts.
  proxy::tls::InterceptionOptions tls_options;
  tls_options.upstream_ca_paths = options.upstream_ca_paths;
  // Parsed on the first intercepted handshake, not before the child starts (4 ms of mbedTLS).
  tls_options.defer_system_roots = true;
  auto interception = proxy::tls::Interception::create(tls_options);
  if (!interception.ok()) {
    log.error("{}", interception.error().message);
    return rt::kExitSetupFailed;
  }
  const std::string& ca_pem = (*interception)->ca().cert_pem();
  // The bundle: the system's bytes copied in the kernel, then our CA (nothing read or parsed).
  for (const auto& written : {proxy::tls::write_pem_file(ca_path, ca_pem),
                              proxy::tls::write_ca_bundle_file(bundle_path, ca_pem)}) {
    if (!written.ok()) {
      log.error("{}", written.error().message);
      return rt::kExitSetupFailed;
    }
  }

  // 5. The sandbox, with its proxy listener inside its own network namespace.
  MainCommand command;
  command.argv = options.command;
  command.env = options.env;
  auto secrets = read_credential_flags(options.credentials);
  if (!secrets.ok()) {
    log.error("{}", secrets.error().message);
    return rt::kExitSetupFailed;
  }
  command.env.insert(command.env.end(), secrets->child_env.begin(), secrets->child_env.end());
  command.network = rt::SandboxNetwork::kProxy;
  command.ca_bundle = bundle_path;
  command.tty = tty;
  command.rootless = rootless;
  auto spec = main_command_spec(command, *credentials, *dirs);
  if (!spec.ok()) {
    log.error("{}", spec.error().message);
    return rt::kExitNotFound;
  }

  // The policy is pushed and the proxy accepting before the child runs far: connections made
  // meanwhile wait in the listener's backlog.
  proxy::PolicyStore store;
  // A bypass attempt is logged, and counted with the proxy's denials (stage "bypass") so
  // `ctl watch-denials` and the summary show it; the server exists by the time the child runs.
  std::atomic<proxy::ProxyServer*> denials_of{nullptr};
  auto log_attempt = log_bypass_attempts(log);
  auto on_bypass = [&denials_of, log_attempt](const rt::BypassAttempt& attempt) {
    log_attempt(attempt);
    proxy::ProxyServer* server = denials_of.load();
    if (server == nullptr) return;
    server->denials().record({attempt.address, attempt.port,
                              attempt.exe.empty() ? "-" : attempt.exe,
                              "direct connection bypassed HTTP CONNECT proxy", "bypass"});
  };
  auto launched_sandbox = start_main_command(*isolation, *spec, log, on_bypass);
  if (const int* failed = std::get_if<int>(&launched_sandbox)) return *failed;
  auto& [child, raw, bypass_monitor, connect_owners] = std::get<Started>(launched_sandbox);
  std::optional<rt::Pty>& pty = isolation->pty;
  if (pty) pty->slave.reset();
  const auto abandon = [&](const std::string& message) {
    raw.reset();
    log.error("{}", message);
    (void)child.signal(SIGKILL);
    return rt::kExitSetupFailed;
  };

  // 6. The proxy: adopts the listener, asks the runtime who is calling, intercepts every tunnel
  //    not marked `tls: skip` (the child trusts our CA).
  std::shared_ptr<rt::SocketDiag> socket_diag;
  if (rt::UniqueFd diag = child.take_socket_diag()) {
    socket_diag = std::make_shared<rt::SocketDiag>(std::move(diag));
  }
  auto identities =
      std::make_shared<ProcessIdentitySource>(child.pid(), socket_diag, connect_owners);
  proxy::ProxyOptions proxy_options;
  proxy_options.listen.clear();
  proxy_options.allow_loopback_upstream = options.allow_loopback_upstream;
  proxy_options.intercept_all = true;
  proxy_options.identity_source = identities;
  if (options.allow_loopback_upstream) {
    log.warn(
        "--allow-loopback-upstream: the SSRF guard admits 127.0.0.0/8 and ::1 upstreams; any "
        "local service the policy names is reachable from the sandbox. For local testing only.");
  }
  proxy::ProxyServer server(proxy_options, store, logger, interception->get());
  denials_of = &server;
  // The monitor reports into the server, so it stops before the server goes, on every path.
  const core::ScopeExit stop_monitor_first([&] {
    if (bypass_monitor) bypass_monitor->stop();
  });
  if (auto adopted = server.adopt_listener(child.take_listener().release()); !adopted.ok()) {
    return abandon("proxy listener: " + adopted.error().message);
  }

  proxy::LocalControlOptions control_options;
  control_options.refuse_static_changes = true;
  control_options.startup_document = policy_text;
  control_options.ca_pem = ca_pem;
  proxy::LocalProxyControl control(store, &server, std::move(control_options));
  if (!policy_text.empty()) {
    proxy::PolicyPush push;
    push.document = policy_text;
    push.source_name = options.policy_file;
    auto pushed = control.push_policy(push);
    if (!pushed.ok()) return abandon("policy push: " + pushed.error().message);
    if (!pushed->accepted) {
      for (const auto& d : pushed->errors)
        log.error("{}: {}: {}", options.policy_file, d.path, d.message);
      return abandon(options.policy_file + ": network policy refused by the proxy");
    }
  } else {
    log.info("no --policy given: the proxy is deny-all until `ctl push-policy` sends one");
  }
  if (!options.inference_routes_file.empty()) {
    auto routes = proxy::load_inference_routes(options.inference_routes_file);
    if (!routes.ok()) return abandon(routes.error().message);
    auto routes_set = control.set_routes(*routes);
    for (proxy::InferenceRoute& route : *routes)
      proxy::wipe_secret(route.api_key);
    if (!routes_set.ok()) return abandon("inference routes: " + routes_set.error().message);
  }
  if (!secrets->secrets.empty()) {
    auto placeholders = control.set_bound_credentials(secrets->secrets);
    if (!placeholders.ok()) return abandon("--credential: " + placeholders.error().message);
  }
  DenialTally denial_tally(server.denials());  // reported once the child has ended
  server.start();

  std::unique_ptr<control::ControlServer> control_server;
  if (!options.control.empty()) {
    control_server = start_control(options.control, control, log);
    if (!control_server) {
      server.shutdown(kProxyStopGrace);
      return abandon("--control " + options.control + ": not started; sandbox stopped");
    }
  }

  std::shared_ptr<rt::MainSession> main_session;
  std::unique_ptr<rt::SshServer> ssh_server;  // before the proxy goes: sessions use it
  if (!options.ssh.empty()) {
    // The main process's PTY (a terminal, or --tty) is what `openshell-main` attaches to.
    if (pty) main_session = std::make_shared<rt::MainSession>(pty->master.get());
    SshSessionServices services;
    services.credentials = std::make_shared<ProxyCredentialProvider>(server.credentials());
    services.main_session = main_session;
    services.on_bypass = on_bypass;
    services.connect_owners = connect_owners;
    ssh_server = start_ssh_server(options, *isolation, child, *spec, std::move(services), log);
    if (!ssh_server) {
      if (control_server) control_server->shutdown();
      server.shutdown(kProxyStopGrace);
      return abandon("--ssh " + options.ssh + ": not started; sandbox stopped");
    }
  }

  core::ProcessInfo launched;
  launched.name = spec->program;
  launched.pid = child.pid();
  launched.cmd_line = fmt::format("{}", fmt::join(spec->argv, " "));
  log.emit(core::events::process_launch(launched));

  // 7. Until the child's end; then control first (no push lands while the proxy stops).
  rt::SuperviseOptions supervise_options;
  supervise_options.timeout = options.timeout;
  if (pty) supervise_options.pty_master = pty->master.get();
  supervise_options.main_session = main_session.get();
  const int code =
      rt::supervise(isolation->spawner, child, isolation->signals, supervise_options, log);
  raw.reset();
  if (main_session) {
    main_session->finish(code);
    main_session->wait_detached(kAttachedGoodbye);
  }
  ssh_server.reset();
  if (bypass_monitor) {
    bypass_monitor->stop();
    log_bypass_totals(*bypass_monitor, log);
  }
  control.close();
  if (control_server) control_server->shutdown();
  server.shutdown(kProxyStopGrace);
  identities->stop();
  log.emit(core::events::process_exit(launched, code));
  denial_tally.report(log);
  return code;
}

}  // namespace openshell::sandbox
