// libFuzzer target for what the proxy does with bytes inside an inspected tunnel: a stream of
// pipelined request heads (16 KiB limit), each checked against the CONNECT authority,
// canonicalised, its query parsed and decided by a compiled policy with L7 rules.
// Invariants: the parser never consumes more than it is given and resumes at the next request;
// a canonical path is absolute, ASCII, free of dot segments and canonical again; a request that
// matches the authority names that host and port; decisions are deterministic.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "openshell/policy/engine.hpp"
#include "openshell/policy/loader.hpp"
#include "openshell/policy/path_canon.hpp"
#include "openshell/proxy/http_head.hpp"

namespace {

using openshell::proxy::RequestHead;
using openshell::proxy::RequestHeadParser;
namespace policy = openshell::policy;

void require(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kPolicy = R"(version: 1
network_policies:
  api:
    name: api
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow: {method: GET, path: "/v1/**"}
          - allow: {method: POST, path: "/v1/items", query: {mode: "fast*"}}
        deny_rules:
          - {method: "*", path: "/v1/admin/**"}
    binaries:
      - path: /usr/bin/curl
)";

const policy::CompiledPolicy& compiled() {
  static const std::shared_ptr<const policy::CompiledPolicy> engine = [] {
    auto loaded = policy::load_policy(kPolicy);
    require(loaded.ok());
    return policy::compile_policy(*loaded.document, 1);
  }();
  return *engine;
}

void check_canonical(const std::string& path, const policy::CanonOptions& options) {
  require(!path.empty() && path.front() == '/');
  for (const char c : path)
    require(static_cast<unsigned char>(c) > 0x20 && c != 0x7f);
  require(path.find("/../") == std::string::npos && path.find("/./") == std::string::npos);
  // Canonical output is a fixed point.
  const auto again = policy::canonicalize_target(path, options);
  require(std::holds_alternative<policy::CanonicalTarget>(again));
  require(std::get<policy::CanonicalTarget>(again).path == path);
}

void check_request(const RequestHead& head) {
  if (openshell::proxy::request_authority_matches(head, "api.example.com", 443, 443)) {
    if (const auto host = head.host()) {
      const auto authority = openshell::proxy::parse_host_header(*host, 443);
      require(authority.ok() && authority->port == 443);
    }
  }
  for (const bool encoded_slash : {false, true}) {
    const policy::CanonOptions options{encoded_slash, true};
    const auto canonical = policy::canonicalize_target(head.target, options);
    const auto* target = std::get_if<policy::CanonicalTarget>(&canonical);
    if (target == nullptr) continue;
    check_canonical(target->path, options);
    policy::QueryParams query;
    if (target->has_query && !policy::parse_query(target->raw_query, query)) continue;
    const policy::ConnectInput connection{"api.example.com", 443, nullptr};
    const policy::RequestInput request{head.method, target->path, &query};
    const policy::Decision first = compiled().decide_request(connection, request);
    const policy::Decision second = compiled().decide_request(connection, request);
    require(first.action == second.action && first.reason == second.reason);
    require(first.action == policy::Action::kAllow || !first.reason.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  RequestHeadParser parser(openshell::proxy::kTunnelRequestHeadLimit);
  // Bodies are not framed here: each head is followed directly by the next (pipelining).
  while (!input.empty()) {
    const auto progress = parser.feed(input);
    require(progress.consumed <= input.size());
    input.remove_prefix(progress.consumed);
    if (progress.status != RequestHeadParser::Status::kComplete) break;
    check_request(parser.head());
    parser.reset();
  }
  return 0;
}
