// Expansion of `access` presets into REST rules (spec §1.6).
#include <string_view>

#include "schema.hpp"

namespace openshell::policy::detail {

namespace {

void add_rules(Endpoint& endpoint, std::initializer_list<std::string_view> methods) {
  for (std::string_view method : methods) {
    RestRule rule;
    rule.method = std::string(method);
    rule.path = "**";
    rule.location = endpoint.location;
    endpoint.rules.push_back(std::move(rule));
  }
}

}  // namespace

void expand_presets(PolicyDocument& document) {
  for (auto& [key, policy] : document.network_policies) {
    for (Endpoint& endpoint : policy.endpoints) {
      if (!endpoint.rules.empty()) continue;
      // An unknown preset generates nothing: every L7 request is then a violation.
      if (endpoint.access == "read-only") {
        add_rules(endpoint, {"GET", "HEAD", "OPTIONS"});
      } else if (endpoint.access == "read-write") {
        add_rules(endpoint, {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"});
      } else if (endpoint.access == "full") {
        add_rules(endpoint, {"*"});
      }
    }
  }
}

}  // namespace openshell::policy::detail
