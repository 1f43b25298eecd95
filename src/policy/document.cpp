// Names of document enums, shared by the loader, validator and engine.
#include "openshell/policy/document.hpp"

#include "openshell/policy/host_pattern.hpp"

namespace openshell::policy {

std::optional<Protocol> parse_protocol(std::string_view text) {
  const std::string name = ascii_lowercase(text);
  if (name.empty()) return Protocol::kNone;
  if (name == "rest") return Protocol::kRest;
  if (name == "sql") return Protocol::kSql;
  if (name == "websocket") return Protocol::kWebsocket;
  if (name == "graphql") return Protocol::kGraphql;
  if (name == "json-rpc") return Protocol::kJsonRpc;
  if (name == "mcp") return Protocol::kMcp;
  if (name == "tcp") return Protocol::kTcp;
  return std::nullopt;
}

std::string_view protocol_name(Protocol protocol) {
  switch (protocol) {
    case Protocol::kNone:
      return "";
    case Protocol::kRest:
      return "rest";
    case Protocol::kSql:
      return "sql";
    case Protocol::kWebsocket:
      return "websocket";
    case Protocol::kGraphql:
      return "graphql";
    case Protocol::kJsonRpc:
      return "json-rpc";
    case Protocol::kMcp:
      return "mcp";
    case Protocol::kTcp:
      return "tcp";
  }
  return "";
}

}  // namespace openshell::policy
