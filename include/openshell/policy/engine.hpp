// The compiled decision engine (spec §2.1–2.5). A CompiledPolicy is immutable once built and is
// shared by every connection admitted under its generation; deciding allocates nothing unless the
// answer is a denial that needs a reason string.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "openshell/policy/document.hpp"
#include "openshell/policy/ip_class.hpp"
#include "openshell/policy/path_canon.hpp"

namespace openshell::policy {

// Who opened the connection (spec §2.1). Paths are kernel-resolved executables.
struct ProcessIdentity {
  std::string_view exe;
  std::span<const std::string> ancestors;      // nearest first
  std::span<const std::string> cmdline_paths;  // informational; never grants access
};

struct ConnectInput {
  std::string_view host;  // compared case-insensitively
  uint16_t port = 0;
  // Null when there is no identity source (standalone proxy): `binaries` are not evaluated.
  const ProcessIdentity* identity = nullptr;
};

struct RequestInput {
  std::string_view method;             // as sent
  std::string_view path;               // canonical (spec §2.7), credential placeholders redacted
  const QueryParams* query = nullptr;  // decoded multimap; null = no query
};

enum class Action { kAllow, kDeny, kAudit };
enum class Layer { kL4, kL7 };

std::string_view action_name(Action action);  // "allow" | "deny" | "audit"
std::string_view layer_name(Layer layer);     // "l4" | "l7"

class CompiledEndpoint;

struct Decision {
  Action action = Action::kDeny;
  Layer layer = Layer::kL4;
  // Key of the policy that admitted the connection; empty when the connection itself is denied.
  std::string_view matched_policy;
  std::string reason;  // empty for a plain allow
  uint64_t generation = 0;
  bool denied_by_rule = false;  // L7: a deny rule matched (vs. no allow rule)
};

// The connection-level answer plus what the data plane needs to carry the connection.
struct ConnectDecision : Decision {
  // First matching endpoint with extended config (protocol, allowed_ips or tls), spec §2.4:
  // supplies `allowed_ips` and the TLS mode. Null when none has extended config.
  const CompiledEndpoint* primary = nullptr;
  bool has_l7_route = false;                 // some matching endpoint has protocol: rest
  bool exact_declared_host = false;          // a non-wildcard endpoint names this exact host
  bool needs_credential_inspection = false;  // reserved for credential injection
};

class CompiledEndpoint {
 public:
  virtual ~CompiledEndpoint() = default;
  virtual const Endpoint& source() const = 0;
  virtual bool tls_skip() const = 0;
  virtual bool has_allowed_ips() const = 0;
  virtual bool allowed_ips_contain(const IpAddress& address) const = 0;
  virtual std::span<const Cidr> allowed_ips() const = 0;
};

class CompiledPolicy {
 public:
  virtual ~CompiledPolicy() = default;

  uint64_t generation() const { return generation_; }
  const PolicyDocument& document() const { return document_; }
  size_t policy_count() const { return document_.network_policies.size(); }

  // L4: may this process open a connection to host:port?
  virtual ConnectDecision decide_connect(const ConnectInput& input) const = 0;

  // L7: the full decision for one HTTP request on an endpoint with `protocol: rest`
  // (L4 match, route selection by endpoint path, allow rules, deny rules, enforcement).
  // On an endpoint without an L7 route this is the L4 decision.
  virtual Decision decide_request(const ConnectInput& connection,
                                  const RequestInput& request) const = 0;

 protected:
  CompiledPolicy(PolicyDocument document, uint64_t generation)
      : document_(std::move(document)), generation_(generation) {}

 private:
  PolicyDocument document_;
  uint64_t generation_;
};

// Options for canonicalising requests on an admitted connection: `allow_encoded_slash` of the
// endpoint that supplies its configuration. Taken from the decision, so it costs no second lookup.
CanonOptions canon_options(const ConnectDecision& decision);

// Builds the immutable engine from a validated document.
std::shared_ptr<const CompiledPolicy> compile_policy(PolicyDocument document, uint64_t generation);

// The deny-all policy every proxy starts with.
std::shared_ptr<const CompiledPolicy> deny_all_policy(uint64_t generation = 0);

}  // namespace openshell::policy
