// IP address classification for the SSRF guard (spec §2.9) and allowed_ips CIDRs.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace openshell::policy {

// An IPv4 or IPv6 address in network byte order; IPv4 is held as-is (not mapped).
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4

  static std::optional<IpAddress> parse(std::string_view text);  // no brackets, no zone
  std::string to_string() const;
  // For ::ffff:a.b.c.d, the embedded IPv4 address; otherwise nullopt.
  std::optional<IpAddress> mapped_v4() const;
  bool operator==(const IpAddress&) const = default;
};

struct Cidr {
  IpAddress network;
  int prefix = 0;

  // "10.0.0.0/8", "fd00::/8", or a bare address (/32 or /128). Host bits are masked off, as the
  // reference's parser does ("10.1.2.3/8" is 10.0.0.0/8); a bad address or prefix is nullopt.
  static std::optional<Cidr> parse(std::string_view text);
  // An IPv4 CIDR matches an IPv4-mapped IPv6 address by its IPv4 part; an IPv6 CIDR matches an
  // IPv4 address by its mapped form (so ::ffff:10.0.0.0/104 contains 10.1.2.3).
  bool contains(const IpAddress& address) const;
  std::string to_string() const;
};

// Loopback, link-local, unspecified (and their IPv4-mapped forms): never reachable.
bool is_always_blocked(const IpAddress& address);
// always-blocked ∪ private, CGNAT, documentation, benchmarking, broadcast, ULA.
bool is_internal(const IpAddress& address);
// True when any address in `cidr` is always-blocked (used to reject allowed_ips at load).
bool overlaps_always_blocked(const Cidr& cidr);

}  // namespace openshell::policy
