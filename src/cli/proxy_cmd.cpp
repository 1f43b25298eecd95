// `openshell proxy`: the egress filter alone. Starts deny-all unless --policy is given; SIGHUP
// reloads the policy file, SIGTERM/SIGINT drain and exit 0. With --control, a gRPC control
// endpoint serves ProxyControl; without it no control socket and no gRPC thread exist.
#include <fmt/core.h>
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "log_flags.hpp"
#include "openshell/control/endpoint.hpp"
#include "openshell/control/server.hpp"
#include "openshell/core/events.hpp"
#include "openshell/core/proxy_protocol.hpp"
#include "openshell/policy/loader.hpp"
#include "openshell/proxy/control.hpp"
#include "openshell/proxy/inference_routes.hpp"
#include "openshell/proxy/server.hpp"
#include "tls_flags.hpp"

namespace openshell::cli {

namespace {

struct ProxyFlags {
  proxy::ProxyOptions options;
  std::string policy_file;
  std::string control;           // unix:PATH | tcp:HOST:PORT; empty: no control endpoint
  std::string inference_routes;  // routes file loaded at start (`ctl set-routes` replaces it)
  std::string control_token_file;
  std::string identity_key_file;  // PROXY v2 identities from `openshell run` (HMAC key)
  std::string control_tls_cert;   // with _key and _client_ca: mutual TLS
  std::string control_tls_key;
  std::string control_tls_client_ca;
  LogFlags log;
  TlsFlags tls;
  double head_timeout = 0;
  double connect_timeout = 0;
  double idle_timeout = 0;
  double grace = 0;
  std::string listen_mode;  // octal, for unix:PATH listeners; empty: 0600
};

// The loader refuses documents over 4 MiB; reading one byte more lets it say so.
constexpr size_t kMaxPolicyFileRead = (size_t{4} << 20) + 1;

std::chrono::milliseconds seconds(double value) {
  return std::chrono::milliseconds(static_cast<int64_t>(value * 1000));
}

// Loads --policy into the store; every diagnostic is logged with its location.
bool load_policy_file(core::Logger& log, proxy::PolicyStore& store, const std::string& file) {
  // Read the text ourselves so the load event can carry its digest; one byte past the loader's
  // size limit is enough for it to refuse an oversized file.
  std::ifstream in(file, std::ios::binary);
  std::string text;
  if (in) {
    text.resize(kMaxPolicyFileRead);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
  }
  if (!in && !in.eof()) {
    log.error("{}: cannot read the policy file", file);
    return false;
  }
  const policy::LoadResult loaded = policy::load_policy(text);
  for (const auto& d : loaded.diagnostics) {
    const std::string where =
        d.location.line > 0 ? fmt::format("{}:{}:{}", file, d.location.line, d.location.column)
                            : file;
    const std::string message = d.path.empty() ? d.message : d.path + ": " + d.message;
    if (d.severity == policy::Severity::kError) {
      log.error("{}: {}", where, message);
    } else {
      log.warn("{}: {}", where, message);
    }
  }
  if (!loaded.ok()) return false;
  const uint64_t generation = store.push_document(*loaded.document);
  log.emit(core::events::policy_loaded(generation, proxy::sha256_hex(text))
               .with_field("policy_file", file));
  return true;
}

int run_proxy(ProxyFlags& flags) {
  auto installed = flags.log.install();
  if (!installed.ok()) {
    fmt::print(stderr, "openshell proxy: {}\n", installed.error().message);
    return kExitFailure;
  }
  core::Logger& log = **installed;
  proxy::ProxyOptions& options = flags.options;
  options.head_timeout = seconds(flags.head_timeout);
  options.connect_timeout = seconds(flags.connect_timeout);
  options.idle_timeout = seconds(flags.idle_timeout);
  options.grace = seconds(flags.grace);
  if (!flags.identity_key_file.empty()) {
    auto key = core::read_identity_key_file(flags.identity_key_file);
    if (!key.ok()) {
      log.error("{}", key.error().message);
      return kExitFailure;
    }
    options.identity_key = std::move(*key);
  }

  proxy::PolicyStore store;
  if (flags.policy_file.empty()) {
    log.info(
        "no --policy given: starting deny-all; every connection is refused until a policy "
        "is loaded");
  } else if (!load_policy_file(log, store, flags.policy_file)) {
    log.error("{}: policy not loaded; refusing to start", flags.policy_file);
    return kExitFailure;
  }
  if (options.allow_loopback_upstream) {
    log.warn(
        "--allow-loopback-upstream: the SSRF guard admits 127.0.0.0/8 and ::1 upstreams; "
        "any local service the policy names is reachable through this proxy. For local "
        "testing only.");
  }
  const bool unix_listener =
      std::any_of(options.listen.begin(), options.listen.end(),
                  [](const std::string& address) { return address.starts_with("unix:"); });
  const bool tcp_listener =
      std::any_of(options.listen.begin(), options.listen.end(),
                  [](const std::string& address) { return !address.starts_with("unix:"); });
  if (unix_listener) {
    log.info(
        "unix listener: a PROXY v2 header from `openshell run --network proxy:unix:` is trusted "
        "without an HMAC (the socket file's permissions, {:04o}, decide who may connect); "
        "`binaries` are evaluated against its identity; a connection without one has none",
        options.unix_listen_mode);
  }
  if (!options.identity_key.empty()) {
    if (tcp_listener) {
      log.info(
          "--identity-key-file: every TCP connection must start with an authenticated PROXY v2 "
          "header from `openshell run`; `binaries` are evaluated against its identity");
    }
  } else if (unix_listener) {
    if (tcp_listener) {
      log.info(
          "TCP listeners without --identity-key-file: no identities there (a PROXY header is "
          "refused){}",
          options.require_identity ? "; --require-identity denies their connections" : "");
    }
  } else if (options.require_identity) {
    log.warn(
        "--require-identity: this proxy has no identity source, so every connection is "
        "denied");
  } else {
    log.info(
        "no process identity source: `binaries` in policies are not evaluated "
        "(--require-identity denies instead)");
  }

  proxy::InferenceRoutes initial_routes;
  if (!flags.inference_routes.empty()) {
    auto loaded = proxy::load_inference_routes(flags.inference_routes);
    if (!loaded.ok()) {
      log.error("{}", loaded.error().message);
      return kExitFailure;
    }
    initial_routes = std::move(*loaded);
  }

  // Signals are taken synchronously by this thread: block them before any worker thread starts
  // so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Without a CA, tunnels that need termination are refused (503) and the rest still work; a
  // CA the operator named that cannot be used is a startup error.
  std::unique_ptr<proxy::tls::Interception> interception;
  if (auto created = flags.tls.create(log); created.ok()) {
    interception = std::move(*created);
  } else if (!flags.tls.options.ca_cert_path.empty() || !flags.tls.ca_out.empty() ||
             !flags.tls.options.upstream_ca_paths.empty()) {
    log.error("{}", created.error().message);
    return kExitFailure;
  } else {
    log.warn("{}; TLS termination disabled: tunnels that need it get 503", created.error().message);
  }
  options.intercept_all = flags.tls.intercept_all();

  proxy::ProxyServer server(options, store, *installed, interception.get());
  if (auto bound = server.bind(); !bound.ok()) {
    log.error("{}", bound.error().message);
    return kExitFailure;
  }
  server.start();
  for (const std::string& address : server.bound_addresses()) {
    core::Event event =
        core::events::app_lifecycle(core::AppActivity::kStart, "proxy listening on " + address);
    event.with_field("listen", address);
    if (address.starts_with("unix:")) {
      event.with_field("socket_mode", fmt::format("{:04o}", options.unix_listen_mode));
    }
    log.emit(event);
  }

  proxy::LocalControlOptions control_options_local;
  if (interception) control_options_local.ca_pem = interception->ca().cert_pem();
  proxy::LocalProxyControl local_control(store, &server, std::move(control_options_local));
  if (!flags.inference_routes.empty()) {
    auto routes_set = local_control.set_routes(initial_routes);
    for (proxy::InferenceRoute& route : initial_routes)
      proxy::wipe_secret(route.api_key);
    if (!routes_set.ok()) {
      log.error("{}: {}", flags.inference_routes, routes_set.error().message);
      server.shutdown(std::chrono::milliseconds(0));
      return kExitFailure;
    }
    log.info("{} inference route(s) from {}", *routes_set, flags.inference_routes);
  }
  std::unique_ptr<control::ControlServer> control_server;
  if (!flags.control.empty()) {
    control::ServerOptions control_options;
    control_options.endpoint = *control::parse_endpoint(flags.control);  // checked when parsed
    if (!flags.control_token_file.empty()) {
      auto token = control::read_token_file(flags.control_token_file);
      if (!token.ok()) {
        log.error("{}", token.error().message);
        server.shutdown(std::chrono::milliseconds(0));
        return kExitFailure;
      }
      control_options.token = std::move(*token);
    }
    if (!flags.control_tls_cert.empty()) {
      auto cert = control::read_pem_file(flags.control_tls_cert);
      auto key = control::read_pem_file(flags.control_tls_key);
      auto ca = control::read_pem_file(flags.control_tls_client_ca);
      for (const auto* read : {&cert, &key, &ca}) {
        if (!read->ok()) {
          log.error("{}", read->error().message);
          server.shutdown(std::chrono::milliseconds(0));
          return kExitFailure;
        }
      }
      control_options.tls = control::ServerTls{*cert, *key, *ca};
    }
    auto started = control::ControlServer::start(std::move(control_options), local_control);
    if (!started.ok()) {
      log.error("control endpoint {}: {}", flags.control, started.error().message);
      server.shutdown(std::chrono::milliseconds(0));
      return kExitFailure;
    }
    control_server = std::move(*started);
    const std::string bound = control_server->endpoint().to_string();
    log.emit(core::events::app_lifecycle(core::AppActivity::kStart, "control listening on " + bound)
                 .with_field("control", bound));
  }

  for (;;) {
    int signal_number = 0;
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      if (flags.policy_file.empty()) {
        log.warn("SIGHUP: no --policy file to reload; still deny-all");
      } else if (!load_policy_file(log, store, flags.policy_file)) {
        log.error("SIGHUP: {} is invalid; generation {} stays active", flags.policy_file,
                  store.generation());
      }
      continue;
    }
    log.emit(core::events::app_lifecycle(
        core::AppActivity::kStop,
        fmt::format("signal {}: draining for up to {} s", signal_number, flags.grace)));
    // Control first: open watch streams end and no push lands while the proxy drains.
    local_control.close();
    if (control_server) control_server->shutdown();
    server.shutdown(options.grace);
    log.emit(core::events::app_lifecycle(core::AppActivity::kStop, "proxy stopped"));
    return kExitOk;
  }
}

}  // namespace

void add_proxy_command(CLI::App& root, Action& action) {
  auto flags = std::make_shared<ProxyFlags>();
  proxy::ProxyOptions& o = flags->options;
  CLI::App* app = root.add_subcommand(
      "proxy",
      "Run the egress proxy alone: CONNECT and forward HTTP, policy-enforced, deny-all "
      "until a policy is loaded");
  o.listen.clear();
  app->add_option("--listen", o.listen,
                  "IP:PORT, [IPv6]:PORT or unix:/PATH to listen on (repeatable; default "
                  "127.0.0.1:3128). On unix:PATH a PROXY v2 identity header from `openshell run "
                  "--network proxy:unix:PATH` needs no HMAC: the socket's mode is the boundary");
  app->add_option("--listen-mode", flags->listen_mode,
                  "Octal permissions of unix:PATH listener sockets (default 0600: only this "
                  "user may connect and assert process identities)");
  app->add_option("--policy", flags->policy_file,
                  "Policy file (YAML or JSON); SIGHUP reloads it. Without it: deny-all")
      ->check(CLI::ExistingFile);
  app->add_option("--inference-routes", flags->inference_routes,
                  "Inference routes file (YAML or JSON) served at inference.local; see "
                  "INFERENCE ROUTES in openshell-proxy(1)")
      ->check(CLI::ExistingFile);
  app->add_option("--control", flags->control,
                  "Serve the control API on unix:PATH (socket 0600) or tcp:HOST:PORT (needs "
                  "--control-token-file or --control-tls-*)");
  app->add_option("--control-token-file", flags->control_token_file,
                  "File holding the bearer token control clients must present")
      ->check(CLI::ExistingFile);
  app->add_option("--control-tls-cert", flags->control_tls_cert,
                  "Control mTLS: this server's certificate chain (PEM)")
      ->check(CLI::ExistingFile);
  app->add_option("--control-tls-key", flags->control_tls_key,
                  "Control mTLS: this server's private key (PEM)")
      ->check(CLI::ExistingFile);
  app->add_option("--control-tls-client-ca", flags->control_tls_client_ca,
                  "Control mTLS: CA that client certificates must chain to (PEM)")
      ->check(CLI::ExistingFile);
  flags->log.add_to(*app);
  flags->tls.add_to(*app);
  app->add_option("--threads", o.threads, "I/O worker threads (default: one per core)")
      ->check(CLI::Range(0, 256));
  app->add_option("--max-connections", o.max_connections,
                  "Concurrent client connections; past it new ones get 503")
      ->check(CLI::Range(1, 1000000))
      ->default_val(proxy::kDefaultMaxConnections);
  app->add_option("--head-timeout", flags->head_timeout,
                  "Seconds a client has to send a complete request head")
      ->check(CLI::Range(0.001, 86400.0))
      ->default_val(std::chrono::duration<double>(proxy::kDefaultHeadTimeout).count());
  app->add_option("--connect-timeout", flags->connect_timeout,
                  "Seconds per upstream address to connect")
      ->check(CLI::Range(0.001, 86400.0))
      ->default_val(std::chrono::duration<double>(proxy::kDefaultUpstreamConnectTimeout).count());
  app->add_option("--idle-timeout", flags->idle_timeout,
                  "Seconds a tunnel or keep-alive connection may stay silent")
      ->check(CLI::Range(0.001, 86400.0))
      ->default_val(std::chrono::duration<double>(proxy::kDefaultIdleTimeout).count());
  app->add_option("--grace", flags->grace,
                  "Seconds open connections may finish after SIGTERM/SIGINT")
      ->check(CLI::Range(0.0, 86400.0))
      ->default_val(std::chrono::duration<double>(proxy::kDefaultGrace).count());
  app->add_option("--resolver-threads", o.resolver_threads,
                  "Threads for DNS lookups (one slow lookup never blocks the others)")
      ->check(CLI::Range(1, 64))
      ->default_val(4);
  app->add_flag("--allow-loopback-upstream", o.allow_loopback_upstream,
                "Let the SSRF guard admit loopback upstreams (local testing only; warns)");
  app->add_option("--identity-key-file", flags->identity_key_file,
                  "Accept process identities from `openshell run --network proxy:` (PROXY v2 "
                  "header with an HMAC keyed by this file's contents, at least 16 bytes)")
      ->check(CLI::ExistingFile);
  app->add_flag("--require-identity", o.require_identity,
                "Deny when no process identity is available instead of ignoring `binaries`");
  app->callback([&action, flags] {
    if (flags->options.listen.empty()) flags->options.listen = {"127.0.0.1:3128"};
    if (!flags->listen_mode.empty()) {
      const std::string& text = flags->listen_mode;
      unsigned mode = 0;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), mode, 8);
      if (error != std::errc() || end != text.data() + text.size() || mode > 0777) {
        throw CLI::ValidationError("--listen-mode",
                                   "'" + text + "' is not an octal mode from 0 to 0777");
      }
      flags->options.unix_listen_mode = mode;
    }
    if (flags->tls.options.ca_cert_path.empty() != flags->tls.options.ca_key_path.empty()) {
      throw CLI::ValidationError("--ca-cert", "--ca-cert and --ca-key go together");
    }
    const size_t tls_files = static_cast<size_t>(!flags->control_tls_cert.empty()) +
                             static_cast<size_t>(!flags->control_tls_key.empty()) +
                             static_cast<size_t>(!flags->control_tls_client_ca.empty());
    if (tls_files != 0 && tls_files != 3) {
      throw CLI::ValidationError("--control-tls-cert",
                                 "mTLS needs --control-tls-cert, --control-tls-key and "
                                 "--control-tls-client-ca together");
    }
    if (!flags->control.empty()) {
      auto endpoint = control::parse_endpoint(flags->control);
      if (!endpoint.ok()) throw CLI::ValidationError("--control", endpoint.error().message);
      if (endpoint->kind == control::Endpoint::Kind::kTcp && flags->control_token_file.empty() &&
          tls_files == 0) {
        throw CLI::ValidationError("--control",
                                   "tcp: needs --control-token-file or --control-tls-* (no "
                                   "unauthenticated TCP control)");
      }
    } else if (!flags->control_token_file.empty() || tls_files != 0) {
      throw CLI::ValidationError("--control-token-file", "control options need --control");
    }
    action = [flags] { return run_proxy(*flags); };
  });
}

}  // namespace openshell::cli
