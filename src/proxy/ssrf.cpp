// The SSRF guard (spec §2.8 steps 8 and 10, §2.9): destination plan and per-address validation.
// Pure: the caller resolves and dials.
#include "openshell/proxy/ssrf.hpp"

#include <algorithm>

namespace openshell::proxy {
namespace {

using policy::Cidr;
using policy::IpAddress;

bool is_loopback(const IpAddress& address) {
  const IpAddress plain = address.mapped_v4().value_or(address);
  if (!plain.v6) return plain.bytes[0] == 127;
  static constexpr std::array<uint8_t, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                       0, 0, 0, 0, 0, 0, 0, 1};
  return plain.bytes == kV6Loopback;
}

// Loopback the operator explicitly opened; everything else keeps its class.
bool loopback_admitted(const IpAddress& address, const SsrfOptions& options) {
  return options.allow_loopback_upstream && is_loopback(address);
}

bool always_blocked(const IpAddress& address, const SsrfOptions& options) {
  return policy::is_always_blocked(address) && !loopback_admitted(address, options);
}

bool internal(const IpAddress& address, const SsrfOptions& options) {
  return policy::is_internal(address) && !loopback_admitted(address, options);
}

SsrfDenial deny(SsrfDenialKind kind, std::string detail) {
  return SsrfDenial{kind, std::move(detail)};
}

std::string control_plane_detail(uint16_t port) {
  return "port " + std::to_string(port) + " is a blocked control-plane port, connection rejected";
}

std::string address_detail(const DestinationPlan& plan, std::string_view what,
                           const IpAddress& address) {
  std::string text = plan.host;
  text += " resolves to ";
  text += what;
  text += address.to_string();
  return text;
}

// The kind a denial carries in each mode (spec §2.8 step 10).
SsrfDenialKind denial_kind(DestinationMode mode) {
  switch (mode) {
    case DestinationMode::kPublicOnly:
      return SsrfDenialKind::kInternalAddress;
    case DestinationMode::kAllowlist:
    case DestinationMode::kImplicitIp:
      return SsrfDenialKind::kAllowedIpsCheckFailed;
    case DestinationMode::kDeclaredHost:
      return SsrfDenialKind::kDeclaredEndpointCheckFailed;
  }
  return SsrfDenialKind::kInternalAddress;
}

std::optional<SsrfDenial> check_address(const DestinationPlan& plan, const IpAddress& address) {
  const SsrfDenialKind kind = denial_kind(plan.mode);
  switch (plan.mode) {
    case DestinationMode::kPublicOnly:
      if (internal(address, plan.options)) {
        return deny(kind,
                    address_detail(plan, "internal address ", address) + ", connection rejected");
      }
      // Loopback admitted by the operator still keeps the node's control plane closed.
      if (loopback_admitted(address, plan.options) && is_control_plane_port(plan.port)) {
        return deny(kind, control_plane_detail(plan.port));
      }
      return std::nullopt;
    case DestinationMode::kAllowlist:
    case DestinationMode::kImplicitIp: {
      if (always_blocked(address, plan.options)) {
        return deny(kind, address_detail(plan, "always-blocked address ", address) +
                              ", connection rejected");
      }
      const bool listed = std::any_of(plan.allowlist.begin(), plan.allowlist.end(),
                                      [&](const Cidr& cidr) { return cidr.contains(address); });
      if (!listed) {
        return deny(kind, address_detail(plan, "", address) +
                              " which is not in allowed_ips, connection rejected");
      }
      return std::nullopt;
    }
    case DestinationMode::kDeclaredHost:
      if (always_blocked(address, plan.options)) {
        return deny(kind, address_detail(plan, "always-blocked address ", address) +
                              ", connection rejected");
      }
      return std::nullopt;
  }
  return deny(kind, "unknown destination mode");
}

SsrfResult<DestinationPlan> parse_allowlist(DestinationPlan plan,
                                            const std::vector<std::string>& entries) {
  plan.allowlist.reserve(entries.size());
  for (const std::string& entry : entries) {
    std::optional<Cidr> cidr = Cidr::parse(entry);
    if (!cidr) {
      return deny(SsrfDenialKind::kInvalidAllowedIps, "invalid CIDR/IP in allowed_ips: " + entry);
    }
    if (policy::overlaps_always_blocked(*cidr)) {
      return deny(SsrfDenialKind::kInvalidAllowedIps,
                  "allowed_ips entry " + entry +
                      " falls within always-blocked range (loopback/link-local/unspecified)");
    }
    plan.allowlist.push_back(*cidr);
  }
  plan.mode = DestinationMode::kAllowlist;
  return plan;
}

}  // namespace

bool is_control_plane_port(uint16_t port) {
  return std::find(kControlPlanePorts.begin(), kControlPlanePorts.end(), port) !=
         kControlPlanePorts.end();
}

std::string_view destination_mode_name(DestinationMode mode) {
  switch (mode) {
    case DestinationMode::kPublicOnly:
      return "public-only";
    case DestinationMode::kAllowlist:
      return "allowlist";
    case DestinationMode::kImplicitIp:
      return "implicit-ip";
    case DestinationMode::kDeclaredHost:
      return "declared-host";
  }
  return "unknown";
}

std::string_view ssrf_denial_kind_text(SsrfDenialKind kind) {
  switch (kind) {
    case SsrfDenialKind::kInternalAddress:
      return "internal address";
    case SsrfDenialKind::kAllowedIpsCheckFailed:
      return "allowed_ips check failed";
    case SsrfDenialKind::kInvalidAllowedIps:
      return "invalid allowed_ips in policy";
    case SsrfDenialKind::kDeclaredEndpointCheckFailed:
      return "declared endpoint check failed";
  }
  return "internal address";
}

SsrfResult<DestinationPlan> plan_destination(std::string_view host, uint16_t port,
                                             const policy::ConnectDecision& decision,
                                             const SsrfOptions& options) {
  DestinationPlan plan;
  plan.host = std::string(host);
  plan.port = port;
  plan.options = options;

  // First match wins (spec §2.8 step 8; the trusted host-gateway mode a. is not built).
  if (decision.primary != nullptr && !decision.primary->source().allowed_ips.empty()) {
    return parse_allowlist(std::move(plan), decision.primary->source().allowed_ips);
  }
  if (std::optional<IpAddress> literal = IpAddress::parse(host);
      literal && !always_blocked(*literal, options)) {
    plan.mode = DestinationMode::kImplicitIp;
    plan.allowlist.push_back(Cidr{*literal, literal->v6 ? 128 : 32});
    return plan;
  }
  if (decision.exact_declared_host && options.declared_host_private) {
    plan.mode = DestinationMode::kDeclaredHost;
    return plan;
  }
  plan.mode = DestinationMode::kPublicOnly;
  return plan;
}

SsrfResult<std::vector<policy::IpAddress>> validate_addresses(
    const DestinationPlan& plan, std::span<const policy::IpAddress> addresses) {
  if (plan.mode != DestinationMode::kPublicOnly && is_control_plane_port(plan.port)) {
    return deny(denial_kind(plan.mode), control_plane_detail(plan.port));
  }
  for (const IpAddress& address : addresses) {
    if (std::optional<SsrfDenial> denial = check_address(plan, address)) return *std::move(denial);
  }
  return std::vector<IpAddress>(addresses.begin(), addresses.end());
}

SsrfResult<std::vector<policy::IpAddress>> check_destination(
    std::string_view host, uint16_t port, const policy::ConnectDecision& decision,
    std::span<const policy::IpAddress> addresses, const SsrfOptions& options) {
  SsrfResult<DestinationPlan> plan = plan_destination(host, port, decision, options);
  if (!plan) return plan.error();
  return validate_addresses(plan.value(), addresses);
}

}  // namespace openshell::proxy
