// LocalProxyControl: ProxyControl as direct calls into a proxy in this process (the `sandbox`
// composition, and the object the gRPC service adapts in `openshell proxy --control`).
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>

#include "openshell/policy/loader.hpp"
#include "openshell/proxy/control.hpp"
#include "openshell/proxy/inference_routes.hpp"
#include "openshell/proxy/policy_store.hpp"
#include "openshell/proxy/server.hpp"
#include "openshell_config.hpp"

namespace openshell::proxy {

namespace {

// How often an idle watch looks at its stop condition (client gone, shutdown).
constexpr std::chrono::milliseconds kWatchPoll{200};
// Bounds on what a controller may store: the proxy holds these in memory for its lifetime.
constexpr size_t kMaxRoutes = 256;

// The static sections a sandbox applies once at startup (spec §1.1).
bool same_filesystem(const std::optional<policy::FilesystemPolicy>& a,
                     const std::optional<policy::FilesystemPolicy>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->include_workdir == b->include_workdir && a->read_only == b->read_only &&
                a->read_write == b->read_write);
}

bool same_landlock(const std::optional<policy::LandlockPolicy>& a,
                   const std::optional<policy::LandlockPolicy>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || a->compatibility == b->compatibility;
}

bool same_process(const std::optional<policy::ProcessPolicy>& a,
                  const std::optional<policy::ProcessPolicy>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->run_as_user == b->run_as_user && a->run_as_group == b->run_as_group);
}

policy::Diagnostic section_diagnostic(policy::Severity severity, std::string path,
                                      std::string message) {
  policy::Diagnostic d;
  d.severity = severity;
  d.path = std::move(path);
  d.message = std::move(message);
  return d;
}

}  // namespace

std::string sha256_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xF];
  }
  return out;
}

std::string credential_placeholder(std::string_view key) {
  return std::string(kPlaceholderPrefix) + std::string(key);
}

struct LocalProxyControl::State {
  PolicyStore& store;
  ProxyServer* server;
  LocalControlOptions options;
  std::optional<policy::PolicyDocument> startup;  // parsed startup_document (refuse mode)
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::mutex mutex;  // guards everything below
  PolicySnapshot policy;
  // Key names only: the secrets live in the server's CredentialStore (or, without a server, in
  // this snapshot), never in a second copy here.
  std::shared_ptr<const CredentialSet> credentials;
  std::vector<std::string> route_names;  // the routes themselves (and keys) live in the proxy
  uint64_t pushes = 0;
  uint64_t push_failures = 0;
  bool closed = false;
  std::vector<std::shared_ptr<DenialSubscription>> watchers;

  State(PolicyStore& s, ProxyServer* srv, LocalControlOptions o)
      : store(s), server(srv), options(std::move(o)) {}
};

LocalProxyControl::LocalProxyControl(PolicyStore& store, ProxyServer* server,
                                     LocalControlOptions options)
    : state_(std::make_unique<State>(store, server, std::move(options))) {
  State& s = *state_;
  if (s.options.refuse_static_changes) {
    policy::LoadResult loaded = policy::load_policy(s.options.startup_document);
    // An unparsable startup document cannot happen in a sandbox that started; treat it as "no
    // static sections" so pushes that add one are refused.
    s.startup = loaded.ok() ? std::move(*loaded.document) : policy::PolicyDocument{};
  }
}

LocalProxyControl::~LocalProxyControl() {
  close();
}

void LocalProxyControl::close() {
  State& s = *state_;
  const std::lock_guard lock(s.mutex);
  s.closed = true;
  for (const auto& watcher : s.watchers)
    watcher->close();
}

Result<PushOutcome> LocalProxyControl::push_policy(const PolicyPush& push) {
  State& s = *state_;
  policy::LoadResult loaded = policy::load_policy(push.document);
  PushOutcome outcome;
  for (policy::Diagnostic& d : loaded.diagnostics) {
    (d.severity == policy::Severity::kError ? outcome.errors : outcome.warnings)
        .push_back(std::move(d));
  }
  if (loaded.ok()) {
    const policy::PolicyDocument& doc = *loaded.document;
    struct Section {
      const char* name;
      const char* noun;
      bool present;
      bool unchanged;
    };
    const bool refuse = s.options.refuse_static_changes;
    const Section sections[] = {
        {"filesystem_policy", "filesystem policy", doc.filesystem.has_value(),
         !refuse || same_filesystem(doc.filesystem, s.startup->filesystem)},
        {"landlock", "landlock policy", doc.landlock.has_value(),
         !refuse || same_landlock(doc.landlock, s.startup->landlock)},
        {"process", "process policy", doc.process.has_value(),
         !refuse || same_process(doc.process, s.startup->process)},
    };
    for (const Section& section : sections) {
      if (refuse && !section.unchanged) {
        outcome.errors.push_back(
            section_diagnostic(policy::Severity::kError, section.name,
                               std::string(section.noun) +
                                   " cannot be changed on a live sandbox (applied at startup)"));
      } else if (!refuse && section.present) {
        outcome.warnings.push_back(section_diagnostic(
            policy::Severity::kWarning, section.name,
            "ignored by the standalone proxy: static sections are applied by a sandbox at "
            "startup"));
      }
    }
  }
  const std::lock_guard lock(s.mutex);
  if (!loaded.ok() || !outcome.errors.empty()) {
    ++s.push_failures;
    outcome.generation = s.store.generation();
    return outcome;
  }
  // Under the mutex so the stored text and digest always describe the generation they name.
  outcome.generation = s.store.push_document(std::move(*loaded.document));
  outcome.accepted = true;
  ++s.pushes;
  s.policy.generation = outcome.generation;
  s.policy.document = push.document;
  s.policy.format = push.format;
  s.policy.digest = sha256_hex(push.document);
  return outcome;
}

Result<PolicySnapshot> LocalProxyControl::get_policy() {
  State& s = *state_;
  const std::lock_guard lock(s.mutex);
  PolicySnapshot snapshot = s.policy;
  // A policy loaded by --policy or SIGHUP bypasses this object: report the live generation and
  // no text rather than text that no longer applies.
  const uint64_t live = s.store.generation();
  if (live != snapshot.generation) snapshot = PolicySnapshot{live, {}, PolicyFormat::kAuto, {}};
  return snapshot;
}

Result<std::map<std::string, std::string>> LocalProxyControl::set_bound_credentials(
    const CredentialMap& credentials) {
  auto set = CredentialSet::build(credentials);
  if (!set.ok()) return set.error();
  std::map<std::string, std::string> placeholders;
  for (const auto& [key, spec] : credentials)
    placeholders.emplace(key, credential_placeholder(key));
  State& s = *state_;
  const std::lock_guard lock(s.mutex);
  // The replaced snapshot's secrets are wiped once the last request using it lets go.
  if (s.server != nullptr) s.server->credentials().replace(*set);
  s.credentials = std::move(*set);
  return placeholders;
}

Result<size_t> LocalProxyControl::set_routes(const std::vector<InferenceRoute>& routes) {
  if (routes.size() > kMaxRoutes) {
    return make_error(Errc::kLimit, "too many inference routes: " + std::to_string(routes.size()) +
                                        " (at most " + std::to_string(kMaxRoutes) + ")");
  }
  // The copy is what the proxy keeps (its keys wiped when replaced); protocols compare lowercase.
  InferenceRoutes stored = routes;
  const auto refuse = [&stored](Error error) {
    for (InferenceRoute& route : stored)
      wipe_secret(route.api_key);
    return error;
  };
  std::vector<std::string> names;
  for (size_t i = 0; i < stored.size(); ++i) {
    InferenceRoute& route = stored[i];
    const std::string where = "routes[" + std::to_string(i) + "]";
    for (std::string& protocol : route.protocols)
      std::transform(protocol.begin(), protocol.end(), protocol.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (std::find(names.begin(), names.end(), route.name) != names.end()) {
      return refuse(make_error(Errc::kInvalidArgument,
                               where + ": duplicate route name '" + route.name + "'"));
    }
    names.push_back(route.name);
    if (auto valid = validate_inference_route(route, where); !valid.ok()) {
      return refuse(valid.error());
    }
  }
  State& s = *state_;
  const std::lock_guard lock(s.mutex);  // names and routes change together
  if (s.server != nullptr) {
    s.server->inference_routes().replace(std::move(stored));
  } else {
    (void)refuse(Error{});  // no proxy to serve them: only the names are kept
  }
  s.route_names = std::move(names);
  return routes.size();
}

Result<ProxyStatus> LocalProxyControl::status() {
  State& s = *state_;
  ProxyStatus status;
  status.generation = s.store.generation();
  status.version = OPENSHELL_VERSION;
  status.uptime_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::steady_clock::now() - s.started)
                                               .count());
  if (s.server != nullptr) {
    status.listeners = s.server->bound_addresses();
    status.active_connections = s.server->active_connections();
    status.counters.connections_total = s.server->connections_total();
    status.counters.denials_total = s.server->denials().total();
  }
  const std::lock_guard lock(s.mutex);
  if (s.policy.generation == status.generation) status.policy_digest = s.policy.digest;
  status.counters.policy_pushes = s.pushes;
  status.counters.policy_push_failures = s.push_failures;
  if (s.credentials) status.credential_keys = s.credentials->keys();
  status.route_names = s.route_names;
  return status;
}

Result<void> LocalProxyControl::watch_denials(const WatchOptions& options,
                                              const DenialCallback& callback) {
  State& s = *state_;
  if (s.server == nullptr) {
    return make_error(Errc::kUnavailable, "no proxy is running: there are no denials to watch");
  }
  DenialAggregator& denials = s.server->denials();
  std::shared_ptr<DenialSubscription> subscription = denials.subscribe();
  {
    const std::lock_guard lock(s.mutex);
    if (s.closed) {
      denials.unsubscribe(subscription);
      return make_error(Errc::kUnavailable, "the proxy is shutting down");
    }
    s.watchers.push_back(subscription);
  }
  const bool want_events = options.events || !options.summaries;
  const bool want_summaries = options.summaries || !options.events;
  for (;;) {
    std::optional<DenialUpdate> update = subscription->pop(kWatchPoll);
    if (!update) {
      if (subscription->closed()) break;
      if (options.should_stop && options.should_stop()) break;
      continue;
    }
    const bool wanted = update->kind == DenialUpdate::Kind::kEvent ? want_events : want_summaries;
    if (wanted && !callback(*update)) break;
  }
  denials.unsubscribe(subscription);
  const std::lock_guard lock(s.mutex);
  std::erase(s.watchers, subscription);
  return {};
}

Result<std::string> LocalProxyControl::get_ca() {
  if (state_->options.ca_pem.empty()) {
    return make_error(Errc::kUnavailable,
                      "no CA: TLS interception is not set up in this proxy (see its start log)");
  }
  return state_->options.ca_pem;
}

}  // namespace openshell::proxy
