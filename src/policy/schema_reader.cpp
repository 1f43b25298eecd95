// Schema pass of policy loading: a YAML (or JSON, same parser) node tree into a PolicyDocument,
// with serde-like strictness (unknown and duplicate keys are errors) and a location for every node.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <exception>
#include <functional>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>

#include "schema.hpp"

namespace openshell::policy {

namespace {

using detail::location_of;

std::string_view type_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "nothing";
}

// A plain (unquoted) scalar that YAML types as a number, boolean or null, not a string.
bool is_plain_non_string(const YAML::Node& node) {
  if (!node.IsScalar() || node.Tag() != "?") return false;
  const std::string& text = node.Scalar();
  if (text == "true" || text == "false" || text == "True" || text == "False" || text == "TRUE" ||
      text == "FALSE" || text == "null" || text == "Null" || text == "NULL" || text == "~") {
    return true;
  }
  double number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && (*begin == '+' || *begin == '-')) ++begin;
  const auto [ptr, ec] = std::from_chars(begin, end, number);
  return begin != end && ec == std::errc() && ptr == end;
}

std::string quoted_list(std::initializer_list<std::string_view> names) {
  std::string text;
  for (std::string_view name : names) {
    if (!text.empty()) text += ", ";
    text += "`";
    text += name;
    text += "`";
  }
  return text;
}

// Set by the reference's gateway, never by users; accepted and ignored.
constexpr std::string_view kInternalEndpointKeys[] = {"provider_credentialed", "advisor_proposed"};

// YAML aliases let a few bytes name a huge tree (a 45 KB "billion laughs" policy expands to
// millions of rules). A plain document within the 4 MiB size limit stays far below this.
constexpr size_t kMaxDocumentNodes = 200000;

struct NodeBudgetExceeded : std::exception {
  const char* what() const noexcept override { return "document expands to too many nodes"; }
};

class SchemaReader {
 public:
  SchemaReader(detail::Locator& locator, std::vector<Diagnostic>& diagnostics)
      : locator_(locator), diagnostics_(diagnostics) {}

  void read_root(const YAML::Node& root, PolicyDocument& document);

 private:
  using FieldHandler =
      std::function<void(const std::string& key, const YAML::Node& value, const std::string& path)>;

  void error(const std::string& path, const YAML::Node& node, std::string message) {
    diagnostics_.push_back(
        Diagnostic{Severity::kError, path, location_of(node), std::move(message)});
  }
  void warning(const std::string& path, const YAML::Node& node, std::string message) {
    diagnostics_.push_back(
        Diagnostic{Severity::kWarning, path, location_of(node), std::move(message)});
  }

  // Visits each key of a mapping once; duplicate keys and keys outside `known` are errors.
  // `open` admits any key (maps whose keys are user data, like network_policies).
  void for_each_field(const YAML::Node& map, const std::string& path,
                      std::initializer_list<std::string_view> known, bool open,
                      const FieldHandler& handler);
  bool expect(const YAML::Node& node, YAML::NodeType::value type, const std::string& path,
              std::string_view expected);
  std::optional<std::string> read_string(const YAML::Node& node, const std::string& path);
  std::optional<bool> read_bool(const YAML::Node& node, const std::string& path);
  std::optional<int64_t> read_integer(const YAML::Node& node, const std::string& path);
  std::vector<std::string> read_string_list(const YAML::Node& node, const std::string& path);

  void read_filesystem(const YAML::Node& node, const std::string& path, FilesystemPolicy& out);
  void read_landlock(const YAML::Node& node, const std::string& path, LandlockPolicy& out);
  void read_process(const YAML::Node& node, const std::string& path, ProcessPolicy& out);
  void read_network_policy(const YAML::Node& node, const std::string& path, NetworkPolicy& out);
  void read_endpoint(const YAML::Node& node, const std::string& path, Endpoint& out);
  void read_port(const YAML::Node& node, const std::string& path, std::vector<uint16_t>& out);
  void read_rules(const YAML::Node& node, const std::string& path, bool deny,
                  std::vector<RestRule>& out);
  void read_rule_body(const YAML::Node& node, const std::string& path, RestRule& out);
  void read_query(const YAML::Node& node, const std::string& path, RestRule& out);

  // Counts one visited node; past the budget, abandons the whole read.
  void spend() {
    if (++visited_ > kMaxDocumentNodes) throw NodeBudgetExceeded();
  }

  detail::Locator& locator_;
  std::vector<Diagnostic>& diagnostics_;
  size_t visited_ = 0;
};

void SchemaReader::for_each_field(const YAML::Node& map, const std::string& path,
                                  std::initializer_list<std::string_view> known, bool open,
                                  const FieldHandler& handler) {
  std::set<std::string, std::less<>> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    spend();
    // yaml-cpp's iterator hands out a temporary pair: copy the (cheap, shared) node handles.
    const YAML::Node key_node = it->first;
    const YAML::Node value = it->second;
    if (!key_node.IsScalar()) {
      error(path, key_node, "map keys must be strings");
      continue;
    }
    const std::string key = key_node.Scalar();
    const std::string field_path = detail::child(path, key);
    if (!seen.insert(key).second) {
      error(field_path, key_node, "duplicate key '" + key + "'");
      continue;
    }
    bool is_known = open;
    for (std::string_view name : known)
      is_known = is_known || name == key;
    if (!is_known) {
      error(field_path, key_node,
            "unknown field `" + key + "`, expected one of " + quoted_list(known));
      continue;
    }
    locator_.record(field_path, location_of(value.IsNull() ? key_node : value));
    handler(key, value, field_path);
  }
}

bool SchemaReader::expect(const YAML::Node& node, YAML::NodeType::value type,
                          const std::string& path, std::string_view expected) {
  if (node.Type() == type) return true;
  error(path, node,
        "invalid type: " + std::string(type_name(node)) + ", expected " + std::string(expected));
  return false;
}

std::optional<std::string> SchemaReader::read_string(const YAML::Node& node,
                                                     const std::string& path) {
  if (!expect(node, YAML::NodeType::Scalar, path, "a string")) return std::nullopt;
  return node.Scalar();
}

std::optional<bool> SchemaReader::read_bool(const YAML::Node& node, const std::string& path) {
  if (!expect(node, YAML::NodeType::Scalar, path, "a boolean")) return std::nullopt;
  const std::string& text = node.Scalar();
  if (node.Tag() == "?") {
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
  }
  error(path, node, "invalid value '" + text + "', expected a boolean (true or false)");
  return std::nullopt;
}

std::optional<int64_t> SchemaReader::read_integer(const YAML::Node& node, const std::string& path) {
  if (!expect(node, YAML::NodeType::Scalar, path, "an integer")) return std::nullopt;
  const std::string& text = node.Scalar();
  int64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') ++begin;
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (node.Tag() != "?" || ec != std::errc() || ptr != end || begin == end) {
    error(path, node, "invalid value '" + text + "', expected an integer");
    return std::nullopt;
  }
  return value;
}

std::vector<std::string> SchemaReader::read_string_list(const YAML::Node& node,
                                                        const std::string& path) {
  std::vector<std::string> out;
  if (node.IsNull()) return out;
  if (!expect(node, YAML::NodeType::Sequence, path, "a list of strings")) return out;
  for (size_t i = 0; i < node.size(); ++i) {
    spend();
    const std::string item_path = detail::element(path, i);
    locator_.record(item_path, location_of(node[i]));
    if (auto text = read_string(node[i], item_path)) out.push_back(std::move(*text));
  }
  return out;
}

void SchemaReader::read_root(const YAML::Node& root, PolicyDocument& document) {
  if (!expect(root, YAML::NodeType::Map, "", "a policy document (a map)")) return;
  bool has_version = false;
  for_each_field(
      root, "",
      {"version", "filesystem_policy", "landlock", "process", "network_policies",
       "network_middlewares"},
      false, [&](const std::string& key, const YAML::Node& value, const std::string& path) {
        if (key == "version") {
          has_version = true;
          if (auto v = read_integer(value, path)) {
            if (*v != 1) {
              error(path, value,
                    "unsupported policy version " + std::to_string(*v) +
                        "; this build reads version 1");
            }
            document.version = static_cast<uint32_t>(*v == 1 ? 1 : 0);
          }
        } else if (key == "filesystem_policy") {
          if (value.IsNull()) return;
          read_filesystem(value, path, document.filesystem.emplace());
        } else if (key == "landlock") {
          if (value.IsNull()) return;
          read_landlock(value, path, document.landlock.emplace());
        } else if (key == "process") {
          if (value.IsNull()) return;
          read_process(value, path, document.process.emplace());
        } else if (key == "network_middlewares") {
          if (!value.IsNull() && !(value.IsMap() && value.size() == 0)) {
            warning(path, value,
                    "network_middlewares are not supported by this build and are ignored");
          }
        } else if (key == "network_policies") {
          if (value.IsNull()) return;
          if (!expect(value, YAML::NodeType::Map, path, "a map of network policies")) return;
          for_each_field(value, path, {}, true,
                         [&](const std::string& policy_key, const YAML::Node& policy_node,
                             const std::string& policy_path) {
                           NetworkPolicy policy;
                           policy.key = policy_key;
                           policy.location = location_of(policy_node);
                           read_network_policy(policy_node, policy_path, policy);
                           document.network_policies.emplace(policy_key, std::move(policy));
                         });
        }
      });
  if (!has_version) error("version", root, "missing field `version`");
}

void SchemaReader::read_filesystem(const YAML::Node& node, const std::string& path,
                                   FilesystemPolicy& out) {
  if (!expect(node, YAML::NodeType::Map, path, "a map")) return;
  for_each_field(node, path, {"include_workdir", "read_only", "read_write"}, false,
                 [&](const std::string& key, const YAML::Node& value, const std::string& p) {
                   if (key == "include_workdir") {
                     out.include_workdir = read_bool(value, p).value_or(false);
                   } else if (key == "read_only") {
                     out.read_only = read_string_list(value, p);
                   } else {
                     out.read_write = read_string_list(value, p);
                   }
                 });
}

void SchemaReader::read_landlock(const YAML::Node& node, const std::string& path,
                                 LandlockPolicy& out) {
  if (!expect(node, YAML::NodeType::Map, path, "a map")) return;
  for_each_field(
      node, path, {"compatibility"}, false,
      [&](const std::string&, const YAML::Node& value, const std::string& p) {
        const auto text = read_string(value, p);
        if (!text) return;
        if (*text == "best_effort") {
          out.compatibility = LandlockCompatibility::kBestEffort;
        } else if (*text == "hard_requirement") {
          out.compatibility = LandlockCompatibility::kHardRequirement;
        } else {
          error(p, value,
                "unknown variant `" + *text + "`, expected `best_effort` or `hard_requirement`");
        }
      });
}

void SchemaReader::read_process(const YAML::Node& node, const std::string& path,
                                ProcessPolicy& out) {
  if (!expect(node, YAML::NodeType::Map, path, "a map")) return;
  for_each_field(node, path, {"run_as_user", "run_as_group"}, false,
                 [&](const std::string& key, const YAML::Node& value, const std::string& p) {
                   std::string& target = key == "run_as_user" ? out.run_as_user : out.run_as_group;
                   if (value.IsNull()) return;
                   target = read_string(value, p).value_or("");
                 });
}

void SchemaReader::read_network_policy(const YAML::Node& node, const std::string& path,
                                       NetworkPolicy& out) {
  if (!expect(node, YAML::NodeType::Map, path, "a network policy (a map)")) return;
  bool has_endpoints = false;
  for_each_field(
      node, path, {"name", "endpoints", "binaries"}, false,
      [&](const std::string& key, const YAML::Node& value, const std::string& p) {
        if (key == "name") {
          if (!value.IsNull()) out.name = read_string(value, p).value_or("");
        } else if (key == "endpoints") {
          has_endpoints = true;
          if (value.IsNull()) return;
          if (!expect(value, YAML::NodeType::Sequence, p, "a list of endpoints")) return;
          for (size_t i = 0; i < value.size(); ++i) {
            spend();
            const std::string endpoint_path = detail::element(p, i);
            locator_.record(endpoint_path, location_of(value[i]));
            Endpoint endpoint;
            endpoint.location = location_of(value[i]);
            read_endpoint(value[i], endpoint_path, endpoint);
            out.endpoints.push_back(std::move(endpoint));
          }
        } else {
          if (value.IsNull()) return;
          if (!expect(value, YAML::NodeType::Sequence, p, "a list of binaries")) return;
          for (size_t i = 0; i < value.size(); ++i) {
            spend();
            const std::string binary_path = detail::element(p, i);
            locator_.record(binary_path, location_of(value[i]));
            if (!expect(value[i], YAML::NodeType::Map, binary_path, "a map with `path`")) {
              continue;
            }
            Binary binary;
            binary.location = location_of(value[i]);
            bool has_path = false;
            for_each_field(
                value[i], binary_path, {"path", "harness"}, false,
                [&](const std::string& field, const YAML::Node& v, const std::string& fp) {
                  if (field == "path") {
                    has_path = true;
                    binary.path = read_string(v, fp).value_or("");
                  } else {
                    (void)read_bool(v, fp);  // deprecated, accepted and ignored
                  }
                });
            if (!has_path) error(binary_path, value[i], "missing field `path`");
            out.binaries.push_back(std::move(binary));
          }
        }
      });
  if (!has_endpoints) error(path, node, "missing field `endpoints`");
  if (out.name.empty()) out.name = out.key;
}

void SchemaReader::read_port(const YAML::Node& node, const std::string& path,
                             std::vector<uint16_t>& out) {
  const auto value = read_integer(node, path);
  if (!value) return;
  if (*value < 1 || *value > 65535) {
    error(path, node, "has invalid port " + std::to_string(*value) + "; expected 1..=65535");
    return;
  }
  out.push_back(static_cast<uint16_t>(*value));
}

void SchemaReader::read_endpoint(const YAML::Node& node, const std::string& path, Endpoint& out) {
  if (!expect(node, YAML::NodeType::Map, path, "an endpoint (a map)")) return;
  std::vector<uint16_t> single_port;
  std::vector<uint16_t> port_list;
  for_each_field(node, path,
                 {"host",
                  "port",
                  "ports",
                  "protocol",
                  "tls",
                  "enforcement",
                  "access",
                  "rules",
                  "deny_rules",
                  "allowed_ips",
                  "path",
                  "allow_encoded_slash",
                  "request_body_credential_rewrite",
                  "allow_uninspected_credentials",
                  "websocket_credential_rewrite",
                  "credential_signing",
                  "signing_service",
                  "signing_region",
                  "credential_binding",
                  "persisted_queries",
                  "graphql_persisted_queries",
                  "graphql_max_body_bytes",
                  "json_rpc",
                  "mcp",
                  "provider_credentialed",
                  "advisor_proposed"},
                 false, [&](const std::string& key, const YAML::Node& value, const std::string& p) {
                   if (key == "host") {
                     if (!value.IsNull()) out.host = read_string(value, p).value_or("");
                   } else if (key == "port") {
                     read_port(value, p, single_port);
                   } else if (key == "ports") {
                     if (value.IsNull()) return;
                     if (!expect(value, YAML::NodeType::Sequence, p, "a list of ports")) return;
                     for (size_t i = 0; i < value.size(); ++i) {
                       spend();
                       const std::string port_path = detail::element(p, i);
                       locator_.record(port_path, location_of(value[i]));
                       read_port(value[i], port_path, port_list);
                     }
                   } else if (key == "protocol") {
                     out.protocol_text = read_string(value, p).value_or("");
                     out.protocol = parse_protocol(out.protocol_text).value_or(Protocol::kNone);
                   } else if (key == "tls") {
                     out.tls = read_string(value, p).value_or("");
                   } else if (key == "enforcement") {
                     out.enforcement_text = read_string(value, p).value_or("");
                     out.enforce = out.enforcement_text == "enforce";
                   } else if (key == "access") {
                     out.access = read_string(value, p).value_or("");
                   } else if (key == "rules" || key == "deny_rules") {
                     const bool deny = key == "deny_rules";
                     (deny ? out.deny_rules_written : out.rules_written) = true;
                     read_rules(value, p, deny, deny ? out.deny_rules : out.rules);
                   } else if (key == "allowed_ips") {
                     out.allowed_ips = read_string_list(value, p);
                   } else if (key == "path") {
                     out.path = read_string(value, p).value_or("");
                   } else if (key == "allow_encoded_slash") {
                     out.allow_encoded_slash = read_bool(value, p).value_or(false);
                   } else if (key == "request_body_credential_rewrite") {
                     out.request_body_credential_rewrite = read_bool(value, p).value_or(false);
                   } else if (key == "allow_uninspected_credentials") {
                     out.allow_uninspected_credentials = read_bool(value, p).value_or(false);
                   } else {
                     for (std::string_view internal : kInternalEndpointKeys) {
                       if (key == internal) return;
                     }
                     out.unsupported_fields.push_back(key);
                   }
                 });
  // `ports` wins over `port` (spec §1.4, §12).
  out.ports = port_list.empty() ? single_port : port_list;
}

void SchemaReader::read_rules(const YAML::Node& node, const std::string& path, bool deny,
                              std::vector<RestRule>& out) {
  if (node.IsNull()) return;
  if (!expect(node, YAML::NodeType::Sequence, path, "a list of rules")) return;
  for (size_t i = 0; i < node.size(); ++i) {
    spend();
    const std::string rule_path = detail::element(path, i);
    const YAML::Node& item = node[i];
    locator_.record(rule_path, location_of(item));
    if (!expect(item, YAML::NodeType::Map, rule_path, "a rule (a map)")) continue;
    RestRule rule;
    rule.location = location_of(item);
    if (deny) {
      read_rule_body(item, rule_path, rule);
    } else {
      for_each_field(item, rule_path, {"allow"}, false,
                     [&](const std::string&, const YAML::Node& value, const std::string& p) {
                       if (value.IsNull()) return;
                       if (!expect(value, YAML::NodeType::Map, p, "an allow clause (a map)")) {
                         return;
                       }
                       read_rule_body(value, p, rule);
                     });
    }
    out.push_back(std::move(rule));
  }
}

void SchemaReader::read_rule_body(const YAML::Node& node, const std::string& path, RestRule& out) {
  for_each_field(node, path, {"method", "path", "query", "command"}, false,
                 [&](const std::string& key, const YAML::Node& value, const std::string& p) {
                   if (key == "query") {
                     read_query(value, p, out);
                     return;
                   }
                   if (value.IsNull()) return;
                   std::string text = read_string(value, p).value_or("");
                   if (key == "method") {
                     out.method = std::move(text);
                   } else if (key == "path") {
                     out.path = std::move(text);
                   } else {
                     out.command = std::move(text);
                   }
                 });
}

void SchemaReader::read_query(const YAML::Node& node, const std::string& path, RestRule& out) {
  if (node.IsNull()) return;
  if (!expect(node, YAML::NodeType::Map, path, "a map of query matchers")) return;
  for_each_field(node, path, {}, true,
                 [&](const std::string& key, const YAML::Node& value, const std::string& p) {
                   QueryMatcher matcher;
                   if (value.IsScalar() && !is_plain_non_string(value)) {
                     matcher.any.push_back(value.Scalar());
                   } else if (value.IsMap()) {
                     bool has_glob = false;
                     bool has_any = false;
                     bool unknown = false;
                     for (auto it = value.begin(); it != value.end(); ++it) {
                       const std::string name = it->first.IsScalar() ? it->first.Scalar() : "";
                       if (name == "glob") {
                         has_glob = true;
                         if (auto g = read_string(it->second, detail::child(p, "glob"))) {
                           matcher.any.push_back(*g);
                         }
                       } else if (name == "any") {
                         has_any = true;
                         const std::string any_path = detail::child(p, "any");
                         locator_.record(any_path, location_of(it->second));
                         if (it->second.IsSequence() && it->second.size() == 0) {
                           error(any_path, it->second, any_path + ": list must not be empty");
                         } else {
                           for (auto& g : read_string_list(it->second, any_path)) {
                             matcher.any.push_back(std::move(g));
                           }
                         }
                       } else {
                         unknown = true;
                       }
                     }
                     if (unknown) {
                       error(p, value, "unknown matcher keys; only `glob` or `any` are supported");
                     } else if (has_glob && has_any) {
                       error(p, value, "matcher cannot specify both `glob` and `any`");
                     } else if (!has_glob && !has_any) {
                       error(p, value, "matcher must specify `glob` or `any`");
                     }
                   } else {
                     // A number or boolean is a typo for a quoted glob; say so.
                     error(p, value, "expected string glob or matcher object");
                     return;
                   }
                   out.query.emplace_back(key, std::move(matcher));
                 });
}

}  // namespace

namespace detail {

SourceLocation location_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return {};
  return SourceLocation{mark.line + 1, mark.column + 1};
}

void read_document(const YAML::Node& root, PolicyDocument& document, Locator& locator,
                   std::vector<Diagnostic>& diagnostics) {
  SchemaReader reader(locator, diagnostics);
  try {
    reader.read_root(root, document);
  } catch (const NodeBudgetExceeded&) {
    diagnostics.push_back(
        Diagnostic{Severity::kError,
                   "",
                   {},
                   "document expands to more than " + std::to_string(kMaxDocumentNodes) +
                       " nodes (YAML aliases repeating large structures?); refusing to read it"});
  }
}

}  // namespace detail

}  // namespace openshell::policy
