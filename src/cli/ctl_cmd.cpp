// `openshell ctl`: a gRPC client of a running proxy, one subcommand per ProxyControl call. Exit
// codes: 0 ok, 1 refused, 2 usage, 3 cannot connect (the message names the endpoint).
#include <fmt/core.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "credentials_file.hpp"
#include "openshell/control/client.hpp"
#include "openshell/control/endpoint.hpp"
#include "openshell/proxy/inference_routes.hpp"

namespace openshell::cli {

namespace {

constexpr int kExitCannotConnect = 3;
// Policy and route files are documents a person wrote; anything bigger is a mistake.
constexpr size_t kMaxInputBytes = 4 * 1024 * 1024;

struct CtlFlags {
  std::string endpoint{control::kDefaultEndpoint};
  std::string token_file;
  std::string tls_ca;  // with tls_cert and tls_key: mutual TLS
  std::string tls_cert;
  std::string tls_key;
  std::string file;  // push-policy, set-routes, set-credentials --file
  std::vector<std::string> pairs;
  std::vector<std::string> from_env;
  bool json = false;
};

// A failed call: transport problems are exit 3, everything the proxy refused is exit 1.
int report(const Error& error) {
  fmt::print(stderr, "openshell ctl: {}\n", error.message);
  return error.code == Errc::kIo || error.code == Errc::kTimeout ? kExitCannotConnect
                                                                 : kExitFailure;
}

int usage(const std::string& message) {
  fmt::print(stderr, "openshell ctl: {} (see 'openshell ctl --help')\n", message);
  return kExitUsage;
}

Result<std::string> read_input(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::kIo, "cannot read " + path);
  std::string text;
  for (std::istreambuf_iterator<char> it(in), end; it != end; ++it) {
    text += *it;
    if (text.size() > kMaxInputBytes) {
      return make_error(Errc::kLimit,
                        path + " is larger than " + std::to_string(kMaxInputBytes) + " bytes");
    }
  }
  return text;
}

// "FILE:LINE:COL: error: path: message", the form editors and CI annotate.
void print_diagnostic(const std::string& file, const policy::Diagnostic& d, const char* severity) {
  std::string where = file;
  if (d.location.line > 0) where += fmt::format(":{}:{}", d.location.line, d.location.column);
  if (d.path.empty()) {
    fmt::print(stderr, "{}: {}: {}\n", where, severity, d.message);
  } else {
    fmt::print(stderr, "{}: {}: {}: {}\n", where, severity, d.path, d.message);
  }
}

int push_policy(proxy::ProxyControl& control, const std::string& file) {
  auto text = read_input(file);
  if (!text.ok()) return usage(text.error().message);
  proxy::PolicyPush push{*text, proxy::PolicyFormat::kAuto, file};
  if (file.ends_with(".json")) push.format = proxy::PolicyFormat::kJson;
  if (file.ends_with(".yaml") || file.ends_with(".yml")) push.format = proxy::PolicyFormat::kYaml;
  auto outcome = control.push_policy(push);
  if (!outcome.ok()) return report(outcome.error());
  for (const auto& d : outcome->errors)
    print_diagnostic(file, d, "error");
  for (const auto& d : outcome->warnings)
    print_diagnostic(file, d, "warning");
  if (!outcome->accepted) {
    fmt::print(stderr, "{}: policy refused ({} error(s)); generation {} stays active\n", file,
               outcome->errors.size(), outcome->generation);
    return kExitFailure;
  }
  fmt::print("policy accepted: generation {}\n", outcome->generation);
  return kExitOk;
}

int get_policy(proxy::ProxyControl& control) {
  auto snapshot = control.get_policy();
  if (!snapshot.ok()) return report(snapshot.error());
  if (snapshot->document.empty()) {
    fmt::print(stderr,
               "generation {}: no pushed policy text (deny-all, or loaded from a file by the "
               "proxy)\n",
               snapshot->generation);
    return kExitOk;
  }
  fmt::print("{}", snapshot->document);
  if (!snapshot->document.ends_with('\n')) fmt::print("\n");
  return kExitOk;
}

// KEY=VALUE lines; blank lines and '#' comments skipped.
Result<void> read_credentials_file(const std::string& path,
                                   std::map<std::string, std::string>& out) {
  auto text = read_input(path);
  if (!text.ok()) return text.error();
  size_t start = 0;
  for (int line = 1; start <= text->size(); ++line) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    std::string entry = text->substr(start, end - start);
    start = end + 1;
    if (entry.ends_with('\r')) entry.pop_back();
    if (entry.empty() || entry.front() == '#') continue;
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      return make_error(Errc::kInvalidArgument,
                        fmt::format("{}:{}: expected KEY=VALUE", path, line));
    }
    out[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return {};
}

int set_credentials(proxy::ProxyControl& control, const CtlFlags& flags) {
  std::map<std::string, std::string> credentials;
  proxy::CredentialMap bound;  // the YAML --file form, with bindings
  if (!flags.file.empty()) {
    auto text = read_input(flags.file);
    if (text.ok() && is_credentials_yaml(*text)) {
      auto parsed = parse_credentials_yaml(*text, flags.file);
      proxy::wipe(*text);
      if (!parsed.ok()) return usage(parsed.error().message);
      bound = std::move(*parsed);
    } else if (auto read = read_credentials_file(flags.file, credentials); !read.ok()) {
      return usage(read.error().message);
    }
  }
  for (const std::string& pair : flags.pairs) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) return usage("expected KEY=VALUE, got '" + pair + "'");
    credentials[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  for (const std::string& key : flags.from_env) {
    const char* value = std::getenv(key.c_str());
    if (value == nullptr) return usage("--from-env " + key + ": not set in the environment");
    credentials[key] = value;
  }
  if (credentials.empty() && flags.file.empty()) {
    return usage("set-credentials needs KEY=VALUE, --from-env KEY or --file F");
  }
  for (auto& [key, value] : credentials) {
    bound[key] = proxy::CredentialSpec{value, {}};
    proxy::wipe(value);
  }
  auto placeholders = control.set_bound_credentials(bound);
  for (auto& [key, spec] : bound)
    proxy::wipe(spec.value);
  if (!placeholders.ok()) return report(placeholders.error());
  for (const auto& [key, placeholder] : *placeholders)
    fmt::print("{}={}\n", key, placeholder);
  return kExitOk;
}

// The routes file (openshell-proxy(1) "INFERENCE ROUTES"): key references are resolved here,
// so the secrets travel only over the control connection.
Result<std::vector<proxy::InferenceRoute>> read_routes(const std::string& path) {
  auto text = read_input(path);
  if (!text.ok()) return text.error();
  return proxy::parse_inference_routes(*text, path);
}

int set_routes(proxy::ProxyControl& control, const std::string& file) {
  auto routes = read_routes(file);
  if (!routes.ok()) {
    fmt::print(stderr, "openshell ctl: {}\n", routes.error().message);
    return routes.error().code == Errc::kIo ? kExitUsage : kExitFailure;
  }
  auto count = control.set_routes(*routes);
  if (!count.ok()) return report(count.error());
  fmt::print("{} inference route(s) configured\n", *count);
  return kExitOk;
}

int status(proxy::ProxyControl& control, bool json) {
  auto s = control.status();
  if (!s.ok()) return report(s.error());
  if (json) {
    const nlohmann::json out = {
        {"generation", s->generation},
        {"policy_digest", s->policy_digest},
        {"listeners", s->listeners},
        {"active_connections", s->active_connections},
        {"counters",
         {{"connections_total", s->counters.connections_total},
          {"denials_total", s->counters.denials_total},
          {"policy_pushes", s->counters.policy_pushes},
          {"policy_push_failures", s->counters.policy_push_failures}}},
        {"uptime_ms", s->uptime_ms},
        {"version", s->version},
        {"credential_keys", s->credential_keys},
        {"route_names", s->route_names},
    };
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  auto join = [](const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items)
      out += (out.empty() ? "" : ", ") + item;
    return out.empty() ? std::string("-") : out;
  };
  fmt::print("version:            {}\n", s->version);
  fmt::print("uptime:             {:.1f} s\n", static_cast<double>(s->uptime_ms) / 1000.0);
  fmt::print("policy generation:  {}\n", s->generation);
  fmt::print("policy digest:      {}\n", s->policy_digest.empty() ? "-" : s->policy_digest);
  fmt::print("listeners:          {}\n", join(s->listeners));
  fmt::print("connections:        {} active, {} total\n", s->active_connections,
             s->counters.connections_total);
  fmt::print("denials:            {}\n", s->counters.denials_total);
  fmt::print("pushes:             {} accepted, {} refused\n", s->counters.policy_pushes,
             s->counters.policy_push_failures);
  fmt::print("credentials:        {} ({})\n", s->credential_keys.size(), join(s->credential_keys));
  fmt::print("inference routes:   {} ({})\n", s->route_names.size(), join(s->route_names));
  return kExitOk;
}

void print_update(const proxy::DenialUpdate& u, bool json) {
  if (json) {
    nlohmann::json out;
    if (u.kind == proxy::DenialUpdate::Kind::kEvent) {
      out = {{"type", "event"},          {"host", u.event.host},     {"port", u.event.port},
             {"binary", u.event.binary}, {"reason", u.event.reason}, {"stage", u.event.stage},
             {"time_ms", u.time_ms}};
    } else {
      out = {{"type", "summary"},
             {"host", u.summary.host},
             {"port", u.summary.port},
             {"binary", u.summary.binary},
             {"stage", u.summary.stage},
             {"count", u.summary.count},
             {"first_seen_ms", u.summary.first_seen_ms},
             {"last_seen_ms", u.summary.last_seen_ms},
             {"sample_reasons", u.summary.sample_reasons}};
    }
    if (u.dropped > 0) out["dropped"] = u.dropped;
    fmt::print("{}\n", out.dump());
  } else {
    if (u.dropped > 0) fmt::print("({} update(s) dropped: reading too slowly)\n", u.dropped);
    if (u.kind == proxy::DenialUpdate::Kind::kEvent) {
      fmt::print("DENIED {}:{} binary={} stage={}: {}\n", u.event.host, u.event.port,
                 u.event.binary, u.event.stage, u.event.reason);
    } else {
      fmt::print("SUMMARY {}:{} binary={} count={}\n", u.summary.host, u.summary.port,
                 u.summary.binary, u.summary.count);
    }
  }
  std::fflush(stdout);
}

int watch_denials(proxy::ProxyControl& control, bool json) {
  auto watched = control.watch_denials({}, [json](const proxy::DenialUpdate& update) {
    print_update(update, json);
    return true;
  });
  if (!watched.ok()) return report(watched.error());
  return kExitOk;
}

int get_ca(proxy::ProxyControl& control) {
  auto pem = control.get_ca();
  if (!pem.ok()) return report(pem.error());
  fmt::print("{}", *pem);
  return kExitOk;
}

// Connects lazily: an unreachable endpoint shows up as the first call's error (exit 3).
int run_ctl(const CtlFlags& flags, const std::function<int(proxy::ProxyControl&)>& call) {
  auto endpoint = control::parse_endpoint(flags.endpoint);
  if (!endpoint.ok()) return usage(endpoint.error().message);
  std::string token;
  if (!flags.token_file.empty()) {
    auto read = control::read_token_file(flags.token_file);
    if (!read.ok()) return usage(read.error().message);
    token = std::move(*read);
  }
  std::optional<control::ClientTls> tls;
  if (!flags.tls_ca.empty() || !flags.tls_cert.empty() || !flags.tls_key.empty()) {
    if (flags.tls_ca.empty() || flags.tls_cert.empty() || flags.tls_key.empty()) {
      return usage("mTLS needs --tls-ca, --tls-cert and --tls-key together");
    }
    auto ca = control::read_pem_file(flags.tls_ca);
    auto cert = control::read_pem_file(flags.tls_cert);
    auto key = control::read_pem_file(flags.tls_key);
    for (const auto* read : {&ca, &cert, &key}) {
      if (!read->ok()) return usage(read->error().message);
    }
    tls = control::ClientTls{*ca, *cert, *key};
  }
  control::GrpcProxyControl client(*endpoint, token, std::move(tls));
  return call(client);
}

}  // namespace

void add_ctl_command(CLI::App& root, Action& action) {
  auto flags = std::make_shared<CtlFlags>();
  CLI::App* app = root.add_subcommand("ctl", "Control a running proxy over gRPC");
  app->require_subcommand(1);
  app->add_option("--endpoint", flags->endpoint,
                  "unix:PATH or tcp:HOST:PORT of the proxy's --control")
      ->default_str(std::string(control::kDefaultEndpoint))
      ->envname("OPENSHELL_CONTROL_ENDPOINT");
  app->add_option("--token-file", flags->token_file,
                  "File holding the bearer token (TCP endpoints without mTLS)");
  app->add_option("--tls-ca", flags->tls_ca, "mTLS: CA of the proxy's certificate (PEM)");
  app->add_option("--tls-cert", flags->tls_cert, "mTLS: this client's certificate (PEM)");
  app->add_option("--tls-key", flags->tls_key, "mTLS: this client's private key (PEM)");

  auto bind = [&action, flags](CLI::App* sub, std::function<int(proxy::ProxyControl&)> call) {
    sub->callback([&action, flags, call = std::move(call)] {
      action = [flags, call] { return run_ctl(*flags, call); };
    });
  };

  CLI::App* push = app->add_subcommand("push-policy", "Validate and activate a policy file");
  push->add_option("FILE", flags->file, "Policy (YAML or JSON)")->required();
  bind(push, [flags](proxy::ProxyControl& c) { return push_policy(c, flags->file); });

  CLI::App* get = app->add_subcommand("get-policy", "Print the active pushed policy");
  bind(get, [](proxy::ProxyControl& c) { return get_policy(c); });

  CLI::App* creds = app->add_subcommand("set-credentials", "Replace the credential set");
  creds->add_option("PAIRS", flags->pairs, "KEY=VALUE (visible in ps: prefer --from-env/--file)");
  creds->add_option("--from-env", flags->from_env, "Take KEY's value from this environment");
  creds->add_option("--file", flags->file,
                    "KEY=VALUE lines, or YAML `credentials: [{key, value|env|file, bindings: "
                    "[{host, port, path}]}]`");
  bind(creds, [flags](proxy::ProxyControl& c) { return set_credentials(c, *flags); });

  CLI::App* routes = app->add_subcommand("set-routes", "Replace the inference routes");
  routes
      ->add_option("FILE", flags->file,
                   "Routes file, YAML or JSON (routes: [...]; see openshell-proxy(1))")
      ->required();
  bind(routes, [flags](proxy::ProxyControl& c) { return set_routes(c, flags->file); });

  CLI::App* stat = app->add_subcommand("status", "Show generation, listeners and counters");
  stat->add_flag("--json", flags->json, "One JSON object");
  bind(stat, [flags](proxy::ProxyControl& c) { return status(c, flags->json); });

  CLI::App* watch = app->add_subcommand("watch-denials", "Stream denials and summaries");
  watch->add_flag("--json", flags->json, "JSON lines");
  bind(watch, [flags](proxy::ProxyControl& c) { return watch_denials(c, flags->json); });

  CLI::App* ca = app->add_subcommand("get-ca", "Print the proxy's CA certificate (PEM)");
  bind(ca, [](proxy::ProxyControl& c) { return get_ca(c); });
}

}  // namespace openshell::cli
