// ProxyControl: the one seam through which anything configures a running proxy (DESIGN.md
// "ProxyControl"). Value types and Result only, so a caller cannot tell whether the proxy is in
// this process (LocalProxyControl) or across a gRPC channel (control::GrpcProxyControl).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/policy/diagnostic.hpp"
#include "openshell/proxy/credentials.hpp"
#include "openshell/proxy/denials.hpp"

namespace openshell::proxy {

class PolicyStore;
class ProxyServer;

// The protocol this build speaks; a server refuses another major version.
inline constexpr uint32_t kControlProtocolMajor = 1;
inline constexpr uint32_t kControlProtocolMinor = 0;

enum class PolicyFormat { kAuto, kYaml, kJson };

struct PolicyPush {
  std::string document;  // the file's text, as written
  PolicyFormat format = PolicyFormat::kAuto;
  std::string source_name;  // for logs; optional
};

struct PushOutcome {
  bool accepted = false;
  uint64_t generation = 0;  // new generation, or the unchanged current one when refused
  std::vector<policy::Diagnostic> errors;
  std::vector<policy::Diagnostic> warnings;
};

struct PolicySnapshot {
  uint64_t generation = 0;
  std::string document;  // empty at generation 0 (deny-all) or for a policy loaded from a file
  PolicyFormat format = PolicyFormat::kAuto;
  std::string digest;  // SHA-256 hex of `document`; empty when there is none
};

struct InferenceRoute {
  std::string name;
  std::string endpoint;
  std::string model;
  std::vector<std::string> protocols;
  std::string provider_type;
  std::string api_key;  // secret
};

struct ControlCounters {
  uint64_t connections_total = 0;
  uint64_t denials_total = 0;
  uint64_t policy_pushes = 0;
  uint64_t policy_push_failures = 0;
};

struct ProxyStatus {
  uint64_t generation = 0;
  std::string policy_digest;
  std::vector<std::string> listeners;
  uint64_t active_connections = 0;
  ControlCounters counters;
  uint64_t uptime_ms = 0;
  std::string version;
  std::vector<std::string> credential_keys;  // names only: secrets never leave the proxy
  std::vector<std::string> route_names;
};

struct WatchOptions {
  bool events = true;
  bool summaries = true;
  // Polled while no update arrives (a gRPC client that went away, a shutdown); true ends the watch.
  std::function<bool()> should_stop;
};

// Called for each update, from a thread of the implementation; return false to stop watching.
using DenialCallback = std::function<bool(const DenialUpdate&)>;

class ProxyControl {
 public:
  virtual ~ProxyControl() = default;

  // Parse, validate, compile, swap atomically. Refused (accepted=false, every error) is a
  // successful call; the Error path is for transport and protocol failures.
  virtual Result<PushOutcome> push_policy(const PolicyPush& push) = 0;
  virtual Result<PolicySnapshot> get_policy() = 0;
  // Replaces the credential set; returns key → placeholder (spec §4.2), never the secrets. A
  // key with bindings is injected only into requests to those endpoints (spec §4.1).
  virtual Result<std::map<std::string, std::string>> set_bound_credentials(
      const CredentialMap& credentials) = 0;
  // The same without bindings: every key is usable on any request the policy allows.
  Result<std::map<std::string, std::string>> set_credentials(
      const std::map<std::string, std::string>& credentials) {
    CredentialMap specs;
    for (const auto& [key, value] : credentials)
      specs[key].value = value;
    auto placeholders = set_bound_credentials(specs);
    for (auto& [key, spec] : specs)
      wipe(spec.value);
    return placeholders;
  }
  // Replaces the inference routes; returns how many are now configured.
  virtual Result<size_t> set_routes(const std::vector<InferenceRoute>& routes) = 0;
  virtual Result<ProxyStatus> status() = 0;
  // Blocks, delivering updates until `callback` returns false or the proxy goes away.
  virtual Result<void> watch_denials(const WatchOptions& options,
                                     const DenialCallback& callback) = 0;
  virtual Result<std::string> get_ca() = 0;
};

// Where a push stands against the static sections a sandbox applied at startup.
struct LocalControlOptions {
  // Sandbox mode: a push whose filesystem_policy/landlock/process differ from the startup
  // document is refused (spec §1.1). Standalone proxy: those sections are ignored with a warning.
  bool refuse_static_changes = false;
  std::string startup_document;  // the policy the sandbox started with (refuse mode)
  // PEM of the interception CA that get_ca() returns; empty: the proxy has no CA.
  std::string ca_pem;
};

// Direct calls into a proxy running in this process.
class LocalProxyControl final : public ProxyControl {
 public:
  // `server` may be null (tests, or before the proxy listens): listeners and connection counts
  // are then empty.
  LocalProxyControl(PolicyStore& store, ProxyServer* server, LocalControlOptions options = {});
  ~LocalProxyControl() override;
  LocalProxyControl(const LocalProxyControl&) = delete;
  LocalProxyControl& operator=(const LocalProxyControl&) = delete;

  Result<PushOutcome> push_policy(const PolicyPush& push) override;
  Result<PolicySnapshot> get_policy() override;
  Result<std::map<std::string, std::string>> set_bound_credentials(
      const CredentialMap& credentials) override;
  Result<size_t> set_routes(const std::vector<InferenceRoute>& routes) override;
  Result<ProxyStatus> status() override;
  Result<void> watch_denials(const WatchOptions& options, const DenialCallback& callback) override;
  Result<std::string> get_ca() override;

  // Ends every watch_denials call (shutdown); later calls return at once.
  void close();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// SHA-256 of `text` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view text);

// The placeholder a workload sees for credential `key` (spec §4.2).
std::string credential_placeholder(std::string_view key);

}  // namespace openshell::proxy
