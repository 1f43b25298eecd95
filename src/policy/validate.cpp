// Semantic validation of a policy document (spec §1.2–1.7): the reference's error and warning
// texts, each reported at the document path and line:column where the problem was written.
#include <charconv>
#include <string>
#include <string_view>

#include "openshell/policy/glob.hpp"
#include "openshell/policy/host_pattern.hpp"
#include "openshell/policy/ip_class.hpp"
#include "schema.hpp"

namespace openshell::policy::detail {

namespace {

// Limits of the reference's validate_sandbox_policy.
constexpr size_t kMaxFilesystemPathBytes = 4096;
constexpr size_t kMaxFilesystemPaths = 256;
// allowed_ips broader than this only warn: probably a mistake, not necessarily one.
constexpr int kBroadCidrPrefix = 16;

constexpr std::string_view kStandardMethods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                                 "DELETE", "PATCH", "OPTIONS", "*"};

bool is_standard_method(std::string_view method) {
  const std::string upper = [&] {
    std::string text(method);
    for (char& c : text) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return text;
  }();
  for (std::string_view m : kStandardMethods) {
    if (upper == m) return true;
  }
  return false;
}

bool has_allow_clause(const RestRule& rule) {
  return !rule.method.empty() || !rule.path.empty() || !rule.command.empty();
}

bool has_dot_dot_component(std::string_view path) {
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(start, end - start) == "..") return true;
    start = end + 1;
  }
  return false;
}

void warn_glob(DiagnosticSink& sink, const std::string& path, std::string_view pattern) {
  for (auto& warning : glob_warnings(pattern))
    sink.warning(path, std::move(warning));
}

void validate_rules(const std::vector<RestRule>& rules, const std::string& path, bool deny,
                    DiagnosticSink& sink) {
  for (size_t i = 0; i < rules.size(); ++i) {
    const RestRule& rule = rules[i];
    const std::string rule_path = deny ? element(path, i) : child(element(path, i), "allow");
    if (!rule.method.empty() && !is_standard_method(rule.method)) {
      sink.warning(child(rule_path, "method"),
                   "Unknown HTTP/WebSocket method '" + rule.method +
                       "'. Standard methods: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, *.");
    }
    if (!rule.path.empty()) warn_glob(sink, child(rule_path, "path"), rule.path);
    for (const auto& [name, matcher] : rule.query) {
      for (const std::string& glob : matcher.any) {
        warn_glob(sink, child(child(rule_path, "query"), name), glob);
      }
    }
  }
}

void validate_allowed_ips(const Endpoint& endpoint, const std::string& path, DiagnosticSink& sink) {
  for (size_t i = 0; i < endpoint.allowed_ips.size(); ++i) {
    const std::string& entry = endpoint.allowed_ips[i];
    const std::string entry_path = element(child(path, "allowed_ips"), i);
    const auto cidr = Cidr::parse(entry);
    if (!cidr) {
      sink.error(entry_path, "invalid CIDR/IP in allowed_ips: " + entry);
      continue;
    }
    if (overlaps_always_blocked(*cidr)) {
      sink.error(entry_path,
                 "allowed_ips entry " + entry +
                     " falls within always-blocked range (loopback/link-local/unspecified); "
                     "remove this entry — SSRF hardening prevents traffic to these "
                     "destinations regardless of policy");
    } else if (cidr->prefix < kBroadCidrPrefix) {
      sink.warning(entry_path, "allowed_ips entry " + entry + " is broader than /" +
                                   std::to_string(kBroadCidrPrefix) +
                                   "; check that every address in it may be reached");
    }
  }
}

void validate_l7(const Endpoint& endpoint, const std::string& path, DiagnosticSink& sink) {
  const bool has_protocol = endpoint.protocol != Protocol::kNone;
  const bool has_access = !endpoint.access.empty();
  if (!endpoint.rules.empty() && has_access) {
    sink.error(path, "rules and access are mutually exclusive");
  }
  if (endpoint.rules_written && endpoint.rules.empty()) {
    sink.error(child(path, "rules"),
               "rules list cannot be empty (would deny all traffic). Use `access: full` or "
               "remove rules.");
  } else if (!endpoint.rules.empty()) {
    bool any_allow = false;
    for (const RestRule& rule : endpoint.rules)
      any_allow = any_allow || has_allow_clause(rule);
    if (!any_allow) {
      sink.error(child(path, "rules"),
                 "rules would deny all traffic (no allow clause found). Use `access: full` or "
                 "add allow clauses to rules.");
    }
  } else if (has_protocol && !has_access) {
    sink.error(path, "protocol requires rules or access to define allowed traffic");
  }

  if (endpoint.deny_rules_written && endpoint.deny_rules.empty()) {
    sink.error(child(path, "deny_rules"),
               "deny_rules list cannot be empty (would have no effect). Remove it if no "
               "denials are needed.");
  } else if (!endpoint.deny_rules.empty()) {
    if (!has_protocol) {
      sink.error(child(path, "deny_rules"),
                 "deny_rules require protocol (L7 inspection must be enabled)");
    } else if (endpoint.rules.empty() && !has_access) {
      sink.error(child(path, "deny_rules"),
                 "deny_rules require rules or access to define the base allow set");
    }
  }

  if (endpoint.protocol == Protocol::kSql && endpoint.enforce) {
    sink.error(child(path, "enforcement"),
               "SQL enforcement requires full SQL parsing (not available in v1). Use "
               "`enforcement: audit`.");
  }
  if (has_access && endpoint.access != "read-only" && endpoint.access != "read-write" &&
      endpoint.access != "full") {
    sink.warning(child(path, "access"), "unsupported L7 access preset '" + endpoint.access +
                                            "' ignored; expected one of: read-only, "
                                            "read-write, full");
  }
  if (!endpoint.enforcement_text.empty() && endpoint.enforcement_text != "enforce" &&
      endpoint.enforcement_text != "audit") {
    sink.warning(child(path, "enforcement"),
                 "unknown enforcement '" + endpoint.enforcement_text + "'; treated as audit");
  }
  validate_rules(endpoint.rules, child(path, "rules"), false, sink);
  validate_rules(endpoint.deny_rules, child(path, "deny_rules"), true, sink);
}

void validate_tls(const Endpoint& endpoint, const std::string& path, DiagnosticSink& sink) {
  const std::string& tls = endpoint.tls;
  if (tls == "terminate" || tls == "passthrough") {
    sink.warning(child(path, "tls"), "'tls: " + tls +
                                         "' is deprecated; TLS termination is now automatic. "
                                         "Use 'tls: skip' to disable.");
  } else if (tls == "skip") {
    bool on_443 = false;
    for (uint16_t port : endpoint.ports)
      on_443 = on_443 || port == 443;
    if (endpoint.protocol != Protocol::kNone && on_443) {
      sink.warning(child(path, "tls"),
                   "'tls: skip' with L7 rules on port 443 — L7 inspection cannot work on "
                   "encrypted traffic");
    }
  } else if (!tls.empty()) {
    sink.warning(child(path, "tls"),
                 "unknown tls mode '" + tls + "'; TLS is auto-detected as if it were unset");
  }
}

void validate_endpoint(const NetworkPolicy& policy, const Endpoint& endpoint,
                       const std::string& path, DiagnosticSink& sink) {
  if (endpoint.ports.empty()) {
    sink.error(path, "endpoint '" + endpoint.host + "' must declare at least one port");
  }
  if (endpoint.host.empty()) {
    if (endpoint.allowed_ips.empty()) {
      sink.error(path, "network policy '" + policy.key +
                           "': endpoint host must not be empty unless allowed_ips constrains a "
                           "non-TCP proxy endpoint");
    }
  } else if (auto message = validate_host_pattern(endpoint.host)) {
    sink.error(child(path, "host"), *message);
  }

  if (!endpoint.protocol_text.empty() && !parse_protocol(endpoint.protocol_text)) {
    sink.error(child(path, "protocol"),
               "unknown protocol '" + endpoint.protocol_text +
                   "' (expected tcp, rest, websocket, graphql, sql, json-rpc, or mcp)");
  } else if (endpoint.protocol != Protocol::kNone && endpoint.protocol != Protocol::kRest) {
    sink.warning(child(path, "protocol"),
                 "protocol '" + std::string(protocol_name(endpoint.protocol)) +
                     "' is not enforced by this build; connections to this endpoint are "
                     "denied until it is supported");
  }
  for (const std::string& field : endpoint.unsupported_fields) {
    sink.warning(child(path, field), "'" + field +
                                         "' is not supported by this build; connections to "
                                         "this endpoint are denied until it is");
  }

  if (!endpoint.path.empty() && endpoint.path != "**" && endpoint.path.front() != '/') {
    sink.error(child(path, "path"),
               "endpoint path must start with '/' or be '**', got '" + endpoint.path + "'");
  }
  validate_l7(endpoint, path, sink);
  validate_tls(endpoint, path, sink);
  validate_allowed_ips(endpoint, path, sink);
}

void validate_binaries(const NetworkPolicy& policy, const std::string& path, DiagnosticSink& sink) {
  for (size_t i = 0; i < policy.binaries.size(); ++i) {
    const Binary& binary = policy.binaries[i];
    const std::string binary_path = child(element(path, i), "path");
    if (binary.path.empty()) {
      sink.error(binary_path, "binary path must not be empty");
    } else if (binary.path.front() != '/') {
      sink.warning(binary_path, "binary path '" + binary.path +
                                    "' is not absolute; it can never match a kernel-resolved "
                                    "executable path");
    } else {
      warn_glob(sink, binary_path, binary.path);
    }
  }
}

void validate_filesystem(const FilesystemPolicy& filesystem, DiagnosticSink& sink) {
  const auto check_list = [&](const std::vector<std::string>& paths, const std::string& where,
                              bool writable) {
    for (size_t i = 0; i < paths.size(); ++i) {
      const std::string& p = paths[i];
      const std::string item = element(where, i);
      if (p.size() > kMaxFilesystemPathBytes) {
        sink.error(item, "path exceeds " + std::to_string(kMaxFilesystemPathBytes) + " bytes");
      } else if (p.empty() || p.front() != '/') {
        sink.error(item, "path must be absolute (start with '/'): " + p);
      } else if (has_dot_dot_component(p)) {
        sink.error(item, "path contains '..' traversal component: " + p);
      } else if (writable && p.find_first_not_of('/') == std::string::npos) {
        sink.error(item, "read-write path is overly broad: " + p);
      }
    }
  };
  check_list(filesystem.read_only, "filesystem_policy.read_only", false);
  check_list(filesystem.read_write, "filesystem_policy.read_write", true);
  const size_t total = filesystem.read_only.size() + filesystem.read_write.size();
  if (total > kMaxFilesystemPaths) {
    sink.error("filesystem_policy", "too many filesystem paths (" + std::to_string(total) +
                                        "); at most " + std::to_string(kMaxFilesystemPaths));
  }
}

bool is_valid_identity(std::string_view value) {
  if (value == "sandbox") return true;
  uint64_t id = 0;
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), id);
  return ec == std::errc() && ptr == value.data() + value.size() && id >= 1 && id <= 4294967294ULL;
}

void validate_process(const ProcessPolicy& process, DiagnosticSink& sink) {
  if (!process.run_as_user.empty() && !is_valid_identity(process.run_as_user)) {
    sink.error("process.run_as_user",
               "run_as_user must be 'sandbox' or a numeric UID/GID in range [1, 4294967294], "
               "got '" +
                   process.run_as_user + "'");
  }
  if (!process.run_as_group.empty() && !is_valid_identity(process.run_as_group)) {
    sink.error("process.run_as_group",
               "run_as_group must be 'sandbox' or a numeric UID/GID in range [1, 4294967294], "
               "got '" +
                   process.run_as_group + "'");
  }
}

}  // namespace

void validate_document(const PolicyDocument& document, DiagnosticSink& sink) {
  if (document.filesystem) validate_filesystem(*document.filesystem, sink);
  if (document.process) validate_process(*document.process, sink);
  for (const auto& [key, policy] : document.network_policies) {
    for (size_t i = 0; i < policy.endpoints.size(); ++i) {
      validate_endpoint(policy, policy.endpoints[i], endpoint_path(key, i), sink);
    }
    validate_binaries(policy, "network_policies." + key + ".binaries", sink);
  }
}

}  // namespace openshell::policy::detail
