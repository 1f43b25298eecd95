// The policy document as written (OpenShell's policy YAML, spec §1): the loader's output and the
// compiler's input. Plain data, no behaviour.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "openshell/policy/diagnostic.hpp"

namespace openshell::policy {

// A query matcher: the request value must match one of these globs (a plain string is a list of
// one).
struct QueryMatcher {
  std::vector<std::string> any;
};

// One REST allow rule (`rules[].allow`) or deny rule (`deny_rules[]`), spec §1.5.
struct RestRule {
  std::string method;   // empty: rule has no method (never matches)
  std::string path;     // empty: rule has no path (never matches)
  std::string command;  // SQL only; kept so `protocol: sql` policies round-trip
  std::vector<std::pair<std::string, QueryMatcher>> query;  // declared order
  SourceLocation location;
};

enum class Protocol { kNone, kRest, kSql, kWebsocket, kGraphql, kJsonRpc, kMcp, kTcp };

// Case-insensitive; "" is kNone; nullopt for a name the reference does not know.
std::optional<Protocol> parse_protocol(std::string_view text);
std::string_view protocol_name(Protocol protocol);

struct Endpoint {
  std::string host;             // as written; matching lowercases
  std::vector<uint16_t> ports;  // `port` promoted into `ports`; `ports` wins when both are set
  Protocol protocol = Protocol::kNone;
  std::string protocol_text;     // as written (the enum is set when it names a known protocol)
  std::string tls;               // "", "skip", "terminate", "passthrough", other (auto)
  bool enforce = false;          // `enforcement: enforce`; anything else is audit
  std::string enforcement_text;  // as written
  std::string access;            // preset name as written
  std::vector<RestRule> rules;   // after preset expansion
  bool rules_written = false;    // `rules:` present in the document (even if empty)
  std::vector<RestRule> deny_rules;
  bool deny_rules_written = false;
  std::vector<std::string> allowed_ips;
  std::string path;  // endpoint path selector
  bool allow_encoded_slash = false;
  bool request_body_credential_rewrite = false;
  bool allow_uninspected_credentials = false;
  // Keys the reference accepts that this build does not enforce (websocket options, SigV4, …).
  std::vector<std::string> unsupported_fields;
  SourceLocation location;
};

struct Binary {
  std::string path;
  SourceLocation location;
};

struct NetworkPolicy {
  std::string key;   // the map key: the rule's identity (matched_policy)
  std::string name;  // display name; defaults to key
  std::vector<Endpoint> endpoints;
  std::vector<Binary> binaries;
  SourceLocation location;
};

struct FilesystemPolicy {
  bool include_workdir = false;
  std::vector<std::string> read_only;
  std::vector<std::string> read_write;
};

enum class LandlockCompatibility { kBestEffort, kHardRequirement };

struct LandlockPolicy {
  LandlockCompatibility compatibility = LandlockCompatibility::kBestEffort;
};

struct ProcessPolicy {
  std::string run_as_user;
  std::string run_as_group;
};

struct PolicyDocument {
  uint32_t version = 1;
  std::optional<FilesystemPolicy> filesystem;
  std::optional<LandlockPolicy> landlock;
  std::optional<ProcessPolicy> process;
  std::map<std::string, NetworkPolicy> network_policies;  // key order = evaluation order
};

}  // namespace openshell::policy
