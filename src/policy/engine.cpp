// The compiled decision engine: indexes built once per policy generation (exact hosts in a hash
// map, wildcards bucketed by their literal suffix, hostless endpoints by port) so a decision is a
// few lookups, whatever the number of policies (spec §2.2–2.5).
#include "openshell/policy/engine.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <unordered_map>
#include <vector>

#include "openshell/policy/glob.hpp"
#include "openshell/policy/host_pattern.hpp"

namespace openshell::policy {

namespace {

// DNS names are at most 253 characters; a longer "host" cannot name any endpoint.
constexpr size_t kMaxHostLength = 255;

char to_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (to_upper(a[i]) != to_upper(b[i])) return false;
  }
  return true;
}

// Lowercases `raw` into `buffer`; empty when the host is too long to name any endpoint.
std::string_view lowercase_host(std::string_view raw, std::array<char, kMaxHostLength>& buffer) {
  if (raw.size() > buffer.size()) return {};
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    buffer[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return {buffer.data(), raw.size()};
}

std::string to_upper(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = to_upper(c);
  return out;
}

// Heterogeneous lookup so a string_view host finds a std::string key without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

struct CompiledRule {
  std::string method;  // uppercase, or "*"
  bool any_path = false;
  std::optional<Glob> path;  // absent: the rule has no path and never matches
  std::vector<std::pair<std::string, std::vector<Glob>>> query;

  bool method_matches(std::string_view actual) const {
    if (method.empty()) return false;
    if (method == "*") return true;
    if (equals_ignore_case(actual, method)) return true;
    return method == "GET" && equals_ignore_case(actual, "HEAD");  // HEAD is implied by GET
  }
  bool path_matches(std::string_view request_path) const {
    return any_path || (path && path->matches(request_path));
  }
  static bool any_glob(const std::vector<Glob>& globs, std::string_view value) {
    return std::any_of(globs.begin(), globs.end(), [&](const Glob& g) { return g.matches(value); });
  }
  // Allow side: every configured key present, and every value of it matching.
  bool allow_query_matches(const QueryParams* params) const {
    for (const auto& [key, globs] : query) {
      bool present = false;
      if (params != nullptr) {
        for (const auto& [name, value] : *params) {
          if (name != key) continue;
          present = true;
          if (!any_glob(globs, value)) return false;
        }
      }
      if (!present) return false;
    }
    return true;
  }
  // Deny side: every configured key present, and for each at least one value matching.
  bool deny_query_matches(const QueryParams* params) const {
    for (const auto& [key, globs] : query) {
      bool hit = false;
      if (params != nullptr) {
        for (const auto& [name, value] : *params) {
          if (name == key && any_glob(globs, value)) {
            hit = true;
            break;
          }
        }
      }
      if (!hit) return false;
    }
    return true;
  }
};

CompiledRule compile_rule(const RestRule& rule) {
  CompiledRule out;
  out.method = rule.method == "*" ? "*" : to_upper(rule.method);
  if (rule.path == "**") {
    out.any_path = true;
  } else if (!rule.path.empty()) {
    out.path = Glob::compile(rule.path, GlobDialect::kPath);
  }
  for (const auto& [key, matcher] : rule.query) {
    std::vector<Glob> globs;
    for (const std::string& g : matcher.any)
      globs.push_back(Glob::compile(g, GlobDialect::kQuery));
    out.query.emplace_back(key, std::move(globs));
  }
  return out;
}

class EndpointImpl final : public CompiledEndpoint {
 public:
  explicit EndpointImpl(const Endpoint& source)
      : source_(&source),
        selector_(EndpointPathSelector::compile(source.path)),
        rego_selector_(Glob::compile(source.path, GlobDialect::kPath)) {
    for (const std::string& entry : source.allowed_ips) {
      if (auto cidr = Cidr::parse(entry)) allowed_ips_.push_back(*cidr);
    }
    for (const RestRule& rule : source.rules)
      allow_.push_back(compile_rule(rule));
    for (const RestRule& rule : source.deny_rules)
      deny_.push_back(compile_rule(rule));
    supported_ = (source.protocol == Protocol::kNone || source.protocol == Protocol::kRest) &&
                 source.unsupported_fields.empty();
  }

  const Endpoint& source() const override { return *source_; }
  bool tls_skip() const override { return source_->tls == "skip"; }
  bool has_allowed_ips() const override { return !source_->allowed_ips.empty(); }
  bool allowed_ips_contain(const IpAddress& address) const override {
    return std::any_of(allowed_ips_.begin(), allowed_ips_.end(),
                       [&](const Cidr& c) { return c.contains(address); });
  }
  std::span<const Cidr> allowed_ips() const override { return allowed_ips_; }

  bool supported() const { return supported_; }
  bool is_l7() const { return source_->protocol == Protocol::kRest; }
  bool has_extended_config() const {
    return (source_->protocol != Protocol::kNone && source_->protocol != Protocol::kTcp) ||
           !source_->allowed_ips.empty() || !source_->tls.empty();
  }
  bool has_port(uint16_t port) const {
    return std::find(source_->ports.begin(), source_->ports.end(), port) != source_->ports.end();
  }
  // Rego's view of the endpoint `path` (dialect a; empty = everything).
  bool rego_path_matches(std::string_view path) const {
    return source_->path.empty() || source_->path == "**" || rego_selector_.matches(path);
  }
  const EndpointPathSelector& selector() const { return selector_; }
  const std::vector<CompiledRule>& allow_rules() const { return allow_; }
  const std::vector<CompiledRule>& deny_rules() const { return deny_; }

 private:
  const Endpoint* source_;
  EndpointPathSelector selector_;
  Glob rego_selector_;
  std::vector<Cidr> allowed_ips_;
  std::vector<CompiledRule> allow_;
  std::vector<CompiledRule> deny_;
  bool supported_ = true;
};

struct PolicyImpl {
  const NetworkPolicy* source = nullptr;
  std::vector<std::string> exact_binaries;
  std::vector<Glob> binary_globs;
  std::vector<EndpointImpl> endpoints;

  bool binary_allowed(const ProcessIdentity* identity) const {
    if (identity == nullptr) return true;  // no identity source: endpoint-only (DESIGN.md)
    const auto exact = [&](std::string_view path) {
      return std::find(exact_binaries.begin(), exact_binaries.end(), path) != exact_binaries.end();
    };
    const auto glob = [&](std::string_view path) {
      return std::any_of(binary_globs.begin(), binary_globs.end(),
                         [&](const Glob& g) { return g.matches(path); });
    };
    if (exact(identity->exe) || glob(identity->exe)) return true;
    return std::any_of(identity->ancestors.begin(), identity->ancestors.end(),
                       [&](const std::string& a) { return exact(a) || glob(a); });
  }
};

// An endpoint that matched host and port: (policy rank, endpoint index), ordered like Rego.
struct EndpointRef {
  uint32_t policy = 0;
  uint32_t endpoint = 0;
  bool operator<(const EndpointRef& other) const {
    return policy != other.policy ? policy < other.policy : endpoint < other.endpoint;
  }
  bool operator==(const EndpointRef&) const = default;
};

struct WildcardRef {
  HostPattern pattern;
  EndpointRef ref;
};

// Candidate list that stays on the stack for every realistic policy.
class Candidates {
 public:
  void add(EndpointRef ref) {
    if (size_ < inline_.size()) {
      inline_[size_++] = ref;
      return;
    }
    if (overflow_.empty()) overflow_.assign(inline_.begin(), inline_.end());
    overflow_.push_back(ref);
    ++size_;
  }
  std::span<EndpointRef> sorted_unique() {
    std::span<EndpointRef> all = overflow_.empty() ? std::span<EndpointRef>(inline_.data(), size_)
                                                   : std::span<EndpointRef>(overflow_);
    std::sort(all.begin(), all.end());
    auto end = std::unique(all.begin(), all.end());
    return all.first(static_cast<size_t>(end - all.begin()));
  }

 private:
  std::array<EndpointRef, 32> inline_{};
  size_t size_ = 0;
  std::vector<EndpointRef> overflow_;
};

std::string join(std::span<const std::string> items, std::string_view separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

std::string binary_denial(const ProcessIdentity& identity, std::string_view key) {
  return "binary '" + std::string(identity.exe) + "' not allowed in policy '" + std::string(key) +
         "' (ancestors: [" + join(identity.ancestors, " -> ") + "], cmdline: [" +
         join(identity.cmdline_paths, ", ") +
         "]). SYMLINK HINT: the binary path is the kernel-resolved target from /proc/<pid>/exe, "
         "not the symlink. If your policy specifies a symlink (e.g., /usr/bin/python3) but the "
         "actual binary is /usr/bin/python3.11, either: (1) use the canonical path in your "
         "policy (run 'readlink -f /usr/bin/python3' inside the sandbox), or (2) ensure "
         "symlink resolution is working (check sandbox logs for 'Cannot access container "
         "filesystem')";
}

class PolicyEngine final : public CompiledPolicy {
 public:
  PolicyEngine(PolicyDocument document, uint64_t generation)
      : CompiledPolicy(std::move(document), generation) {
    build();
  }

  ConnectDecision decide_connect(const ConnectInput& input) const override;
  Decision decide_request(const ConnectInput& connection,
                          const RequestInput& request) const override;

 private:
  void build();
  void index_endpoint(std::string_view host, EndpointRef ref);
  // Fills `out` with endpoints matching host:port (lowercase host), in Rego order.
  void gather(std::string_view host, uint16_t port, Candidates& out) const;
  const EndpointImpl& endpoint(EndpointRef ref) const {
    return policies_[ref.policy].endpoints[ref.endpoint];
  }

  std::vector<PolicyImpl> policies_;  // key order
  std::unordered_map<std::string, std::vector<EndpointRef>, StringHash, std::equal_to<>> exact_;
  // Wildcards keyed by their literal trailing labels ("example.com" for "*.example.com").
  std::unordered_map<std::string, std::vector<WildcardRef>, StringHash, std::equal_to<>>
      wildcard_by_suffix_;
  std::vector<WildcardRef> wildcard_other_;  // no literal suffix
  std::vector<EndpointRef> hostless_;
};

void PolicyEngine::build() {
  policies_.reserve(document().network_policies.size());
  for (const auto& [key, policy] : document().network_policies) {
    PolicyImpl compiled;
    compiled.source = &policy;
    for (const Binary& binary : policy.binaries) {
      if (binary.path.find('*') == std::string::npos) {
        compiled.exact_binaries.push_back(binary.path);
      } else {
        compiled.binary_globs.push_back(Glob::compile(binary.path, GlobDialect::kPath));
      }
    }
    compiled.endpoints.reserve(policy.endpoints.size());
    for (const Endpoint& endpoint : policy.endpoints)
      compiled.endpoints.emplace_back(endpoint);
    policies_.push_back(std::move(compiled));
  }
  for (uint32_t p = 0; p < policies_.size(); ++p) {
    const auto& endpoints = policies_[p].endpoints;
    for (uint32_t e = 0; e < endpoints.size(); ++e) {
      index_endpoint(endpoints[e].source().host, EndpointRef{p, e});
    }
  }
}

void PolicyEngine::index_endpoint(std::string_view host, EndpointRef ref) {
  if (host.empty()) {
    if (!endpoint(ref).source().allowed_ips.empty()) hostless_.push_back(ref);
    return;
  }
  const std::string lower = ascii_lowercase(host);
  if (lower.find('*') == std::string::npos) {
    exact_[lower].push_back(ref);
    return;
  }
  // The literal suffix: every label after the last one holding a wildcard character.
  const size_t last_wild = lower.rfind('*');
  const size_t dot = lower.find('.', last_wild);
  WildcardRef wildcard{HostPattern::compile(lower), ref};
  if (dot == std::string::npos || dot + 1 >= lower.size()) {
    wildcard_other_.push_back(std::move(wildcard));
  } else {
    wildcard_by_suffix_[lower.substr(dot + 1)].push_back(std::move(wildcard));
  }
}

void PolicyEngine::gather(std::string_view host, uint16_t port, Candidates& out) const {
  const auto consider = [&](EndpointRef ref) {
    if (endpoint(ref).has_port(port)) out.add(ref);
  };
  if (auto it = exact_.find(host); it != exact_.end()) {
    for (EndpointRef ref : it->second)
      consider(ref);
  }
  if (!wildcard_by_suffix_.empty()) {
    // Try every proper label suffix of the host: "a.b.example.com" → "b.example.com", ….
    for (size_t dot = host.find('.'); dot != std::string_view::npos;
         dot = host.find('.', dot + 1)) {
      auto it = wildcard_by_suffix_.find(host.substr(dot + 1));
      if (it == wildcard_by_suffix_.end()) continue;
      for (const WildcardRef& w : it->second) {
        if (w.pattern.matches(host)) consider(w.ref);
      }
    }
  }
  for (const WildcardRef& w : wildcard_other_) {
    if (w.pattern.matches(host)) consider(w.ref);
  }
  for (EndpointRef ref : hostless_)
    consider(ref);
}

ConnectDecision PolicyEngine::decide_connect(const ConnectInput& input) const {
  ConnectDecision decision;
  decision.generation = generation();
  if (policies_.empty()) {
    decision.reason = "network connections not allowed by policy";
    return decision;
  }
  std::array<char, kMaxHostLength> buffer{};
  const std::string_view raw = input.host;
  if (raw.find('\0') != std::string_view::npos) {
    decision.reason = "policy evaluation error: host contains a NUL byte";
    return decision;
  }
  const std::string_view host = lowercase_host(raw, buffer);

  Candidates candidates;
  if (!host.empty()) gather(host, input.port, candidates);
  const std::span<EndpointRef> matches = candidates.sorted_unique();

  bool any_supported = false;
  bool any_unsupported = false;
  const PolicyImpl* first_binary_miss = nullptr;
  std::string binary_reasons;
  uint32_t checked_policy = UINT32_MAX;
  bool policy_ok = false;
  for (const EndpointRef ref : matches) {
    const EndpointImpl& ep = endpoint(ref);
    if (!ep.supported()) {
      any_unsupported = true;
      continue;
    }
    any_supported = true;
    const PolicyImpl& policy = policies_[ref.policy];
    if (ref.policy != checked_policy) {
      checked_policy = ref.policy;
      policy_ok = policy.binary_allowed(input.identity);
      if (!policy_ok && input.identity != nullptr) {
        if (first_binary_miss == nullptr) first_binary_miss = &policy;
        if (!binary_reasons.empty()) binary_reasons += "; ";
        binary_reasons += binary_denial(*input.identity, policy.source->key);
      }
    }
    if (!policy_ok) continue;
    if (decision.matched_policy.empty()) {
      decision.action = Action::kAllow;
      decision.matched_policy = policy.source->key;
    }
    if (decision.primary == nullptr && ep.has_extended_config()) decision.primary = &ep;
    decision.has_l7_route = decision.has_l7_route || ep.is_l7();
    if (ep.source().host.find('*') == std::string::npos && !ep.source().host.empty()) {
      decision.exact_declared_host = true;  // the host index matched it exactly
    }
  }
  if (decision.action == Action::kAllow) return decision;

  if (!binary_reasons.empty()) {
    decision.reason = std::move(binary_reasons);
  } else if (any_unsupported && !any_supported) {
    decision.reason = "endpoint " + std::string(host) + ":" + std::to_string(input.port) +
                      " is declared only with features this build does not enforce yet; "
                      "denied until they are supported";
  } else {
    decision.reason = "endpoint " + ascii_lowercase(raw) + ":" + std::to_string(input.port) +
                      " is not allowed by any policy";
  }
  return decision;
}

Decision PolicyEngine::decide_request(const ConnectInput& connection,
                                      const RequestInput& request) const {
  ConnectDecision l4 = decide_connect(connection);
  if (l4.action != Action::kAllow || !l4.has_l7_route) return l4;

  Decision decision;
  decision.layer = Layer::kL7;
  decision.generation = generation();
  decision.matched_policy = l4.matched_policy;
  // The reference's engine errors on NUL; a deny rule that silently failed to match would fail
  // open, so an unmatchable value is a denial.
  if (request.query != nullptr) {
    for (const auto& [name, value] : *request.query) {
      if (name.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
        decision.action = Action::kDeny;
        decision.reason = "L7 evaluation error: query contains a NUL byte";
        return decision;
      }
    }
  }

  // Recompute the admitting endpoints for this request (same generation, same inputs).
  std::array<char, kMaxHostLength> buffer{};
  Candidates candidates;
  gather(lowercase_host(connection.host, buffer), connection.port, candidates);

  const EndpointImpl* route = nullptr;
  bool allowed = false;
  bool denied = false;
  uint32_t checked_policy = UINT32_MAX;
  bool policy_ok = false;
  for (const EndpointRef ref : candidates.sorted_unique()) {
    const EndpointImpl& ep = endpoint(ref);
    if (!ep.supported()) continue;
    if (ref.policy != checked_policy) {
      checked_policy = ref.policy;
      policy_ok = policies_[ref.policy].binary_allowed(connection.identity);
    }
    if (!policy_ok) continue;
    // Route selection (Rust dialect): the most specific matching L7 endpoint path wins.
    if (ep.is_l7() && ep.selector().matches(request.path) &&
        (route == nullptr || ep.selector().specificity() > route->selector().specificity())) {
      route = &ep;
    }
    if (!ep.rego_path_matches(request.path)) continue;
    for (const CompiledRule& rule : ep.allow_rules()) {
      if (!allowed && rule.method_matches(request.method) && rule.path_matches(request.path) &&
          rule.allow_query_matches(request.query)) {
        allowed = true;
      }
    }
    for (const CompiledRule& rule : ep.deny_rules()) {
      if (!denied && rule.method_matches(request.method) && rule.path_matches(request.path) &&
          rule.deny_query_matches(request.query)) {
        denied = true;
      }
    }
  }
  if (route == nullptr) {
    decision.action = Action::kDeny;
    decision.reason = "no L7 endpoint path matched request";
    return decision;
  }
  if (allowed && !denied) {
    decision.action = Action::kAllow;
    return decision;
  }
  decision.denied_by_rule = denied;
  decision.reason = std::string(request.method) + " " + std::string(request.path) +
                    (denied ? " blocked by deny rule" : " not permitted by policy");
  decision.action = route->source().enforce ? Action::kDeny : Action::kAudit;
  return decision;
}

}  // namespace

std::string_view action_name(Action action) {
  switch (action) {
    case Action::kAllow:
      return "allow";
    case Action::kDeny:
      return "deny";
    case Action::kAudit:
      return "audit";
  }
  return "deny";
}

CanonOptions canon_options(const ConnectDecision& decision) {
  CanonOptions options;
  if (decision.primary != nullptr) {
    options.allow_encoded_slash = decision.primary->source().allow_encoded_slash;
  }
  return options;
}

std::string_view layer_name(Layer layer) {
  return layer == Layer::kL4 ? "l4" : "l7";
}

std::shared_ptr<const CompiledPolicy> compile_policy(PolicyDocument document, uint64_t generation) {
  return std::make_shared<const PolicyEngine>(std::move(document), generation);
}

std::shared_ptr<const CompiledPolicy> deny_all_policy(uint64_t generation) {
  return compile_policy(PolicyDocument{}, generation);
}

}  // namespace openshell::policy
