// The SSRF guard of a CONNECT or forward request (spec §2.8 steps 8 and 10): which addresses a
// destination may resolve to, decided from the policy's answer. Pure functions, no I/O.
#pragma once

#include <array>
#include <cassert>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/policy/engine.hpp"
#include "openshell/policy/ip_class.hpp"

namespace openshell::proxy {

// etcd (2379, 2380), kube-apiserver (6443) and kubelet (10250, 10255): refused even when an
// allowlist or a declared host admits the address, because reaching them from a sandbox hands
// over the cluster.
inline constexpr std::array<uint16_t, 5> kControlPlanePorts{2379, 2380, 6443, 10250, 10255};

bool is_control_plane_port(uint16_t port);

struct SsrfOptions {
  // Operator flag (tests, local development): admits 127.0.0.0/8 and ::1 (and their IPv4-mapped
  // forms) as upstreams. Never link-local, cloud metadata or unspecified, and control-plane ports
  // stay closed on loopback because that is exactly where a node's kubelet and etcd listen.
  bool allow_loopback_upstream = false;
  // HEAD re-admits private ranges for an exactly declared host (spec §12); the baseline does not.
  // We follow the baseline: only `allowed_ips` re-admits private addresses.
  bool declared_host_private = false;
};

// How resolved addresses are judged (spec §2.8 step 8; the trusted-gateway mode is not built).
enum class DestinationMode {
  kPublicOnly,    // default: nothing internal
  kAllowlist,     // the endpoint's allowed_ips
  kImplicitIp,    // the host is an IP literal: that address only
  kDeclaredHost,  // exact declared host (only with declared_host_private): private allowed
};
std::string_view destination_mode_name(DestinationMode mode);

enum class SsrfDenialKind {
  kInternalAddress,
  kAllowedIpsCheckFailed,
  kInvalidAllowedIps,
  kDeclaredEndpointCheckFailed,
};
// The spec's `kind` wording, as in `CONNECT {host}:{port} blocked: {kind}`.
std::string_view ssrf_denial_kind_text(SsrfDenialKind kind);

struct SsrfDenial {
  SsrfDenialKind kind = SsrfDenialKind::kInternalAddress;
  // For logs and events, e.g. `h resolves to internal address 10.0.0.1, connection rejected`.
  std::string detail;

  std::string_view kind_text() const { return ssrf_denial_kind_text(kind); }
};

// A value or the denial that replaced it.
template <class T>
using SsrfResult = Result<T, SsrfDenial>;

// Step 8's outcome. A value type: it copies what it needs out of the policy, so it does not pin
// the policy generation.
struct DestinationPlan {
  DestinationMode mode = DestinationMode::kPublicOnly;
  std::string host;  // lowercased CONNECT host, for messages
  uint16_t port = 0;
  std::vector<policy::Cidr> allowlist;  // kAllowlist: allowed_ips; kImplicitIp: the literal
  SsrfOptions options;
};

// Step 8. Denies only when the endpoint's allowed_ips do not parse or name an always-blocked
// range (the loader rejects those too; this keeps the guard closed if one slips through).
SsrfResult<DestinationPlan> plan_destination(std::string_view host, uint16_t port,
                                             const policy::ConnectDecision& decision,
                                             const SsrfOptions& options);

// Step 10 for every resolved address, in order: one bad address denies the whole connection.
// On success, the addresses to dial (the input, unchanged).
SsrfResult<std::vector<policy::IpAddress>> validate_addresses(
    const DestinationPlan& plan, std::span<const policy::IpAddress> addresses);

// Steps 8 and 10 in one call, for callers that already hold the resolved addresses.
SsrfResult<std::vector<policy::IpAddress>> check_destination(
    std::string_view host, uint16_t port, const policy::ConnectDecision& decision,
    std::span<const policy::IpAddress> addresses, const SsrfOptions& options);

}  // namespace openshell::proxy
