// IP address parsing, CIDR matching and the SSRF classification of proxy-spec §2.9. IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d) are judged by their IPv4 address everywhere, so a mapped form
// can never slip past a check written for IPv4.
#include "openshell/policy/ip_class.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <initializer_list>

namespace openshell::policy {
namespace {

// Longest text either family can take, plus the terminating NUL inet_pton needs.
constexpr std::size_t kMaxAddressText = INET6_ADDRSTRLEN;

constexpr IpAddress v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress address;
  address.bytes = {a, b, c, d};
  return address;
}

// An IPv6 address from its eight 16-bit groups.
constexpr IpAddress v6(std::initializer_list<uint16_t> groups) {
  IpAddress address;
  address.v6 = true;
  std::size_t i = 0;
  for (const uint16_t group : groups) {
    address.bytes[i++] = static_cast<uint8_t>(group >> 8);
    address.bytes[i++] = static_cast<uint8_t>(group & 0xff);
  }
  return address;
}

constexpr Cidr cidr(IpAddress network, int prefix) {
  return Cidr{network, prefix};
}

int max_prefix(const IpAddress& address) {
  return address.v6 ? 128 : 32;
}

// True when the first `bits` bits of `a` and `b` are equal.
bool same_prefix(const IpAddress& a, const IpAddress& b, int bits) {
  const auto whole = static_cast<std::size_t>(bits / 8);
  if (!std::equal(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(whole),
                  b.bytes.begin())) {
    return false;
  }
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.bytes[whole] & mask) == (b.bytes[whole] & mask);
}

// ::ffff:a.b.c.d for an IPv4 address.
IpAddress to_mapped_v6(const IpAddress& address) {
  IpAddress mapped;
  mapped.v6 = true;
  mapped.bytes[10] = 0xff;
  mapped.bytes[11] = 0xff;
  std::copy_n(address.bytes.begin(), 4, mapped.bytes.begin() + 12);
  return mapped;
}

// The same CIDR written over ::ffff:0:0/96, e.g. 127.0.0.0/8 -> ::ffff:127.0.0.0/104.
Cidr to_mapped_v6(const Cidr& range) {
  return Cidr{to_mapped_v6(range.network), range.prefix + 96};
}

// Two CIDRs of one family overlap iff they agree on the shorter prefix.
bool overlaps(const Cidr& a, const Cidr& b) {
  return a.network.v6 == b.network.v6 &&
         same_prefix(a.network, b.network, std::min(a.prefix, b.prefix));
}

// §2.9 always-blocked: loopback, link-local, unspecified. Never reachable, whatever the policy.
constexpr std::array<Cidr, 3> kAlwaysBlockedV4 = {
    cidr(v4(127, 0, 0, 0), 8),
    cidr(v4(169, 254, 0, 0), 16),
    cidr(v4(0, 0, 0, 0), 32),
};
constexpr std::array<Cidr, 3> kAlwaysBlockedV6 = {
    cidr(v6({0, 0, 0, 0, 0, 0, 0, 1}), 128),  // ::1
    cidr(v6({0, 0, 0, 0, 0, 0, 0, 0}), 128),  // ::
    cidr(v6({0xfe80, 0, 0, 0, 0, 0, 0, 0}), 10),
};

// §2.9 internal beyond always-blocked: private, CGNAT, IETF protocol assignments, documentation,
// benchmarking, limited broadcast, unique-local IPv6.
constexpr std::array<Cidr, 10> kInternalV4 = {
    cidr(v4(10, 0, 0, 0), 8),         cidr(v4(172, 16, 0, 0), 12),  cidr(v4(192, 168, 0, 0), 16),
    cidr(v4(100, 64, 0, 0), 10),      cidr(v4(192, 0, 0, 0), 24),   cidr(v4(192, 0, 2, 0), 24),
    cidr(v4(198, 51, 100, 0), 24),    cidr(v4(203, 0, 113, 0), 24), cidr(v4(198, 18, 0, 0), 15),
    cidr(v4(255, 255, 255, 255), 32),
};
constexpr std::array<Cidr, 1> kInternalV6 = {
    cidr(v6({0xfc00, 0, 0, 0, 0, 0, 0, 0}), 7),
};

template <std::size_t N>
bool any_contains(const std::array<Cidr, N>& ranges, const IpAddress& address) {
  return std::any_of(ranges.begin(), ranges.end(),
                     [&](const Cidr& range) { return range.contains(address); });
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton already refuses brackets, zone ids ("%eth0"), spaces and leading zeros; an embedded
  // NUL would end its string early, so refuse that here.
  if (text.empty() || text.size() >= kMaxAddressText || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::array<char, kMaxAddressText> buffer{};
  text.copy(buffer.data(), text.size());
  IpAddress address;
  address.v6 = text.find(':') != std::string_view::npos;
  if (inet_pton(address.v6 ? AF_INET6 : AF_INET, buffer.data(), address.bytes.data()) != 1) {
    return std::nullopt;
  }
  return address;
}

std::string IpAddress::to_string() const {
  std::array<char, kMaxAddressText> buffer{};
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buffer.data(),
                static_cast<socklen_t>(buffer.size())) == nullptr) {
    return {};
  }
  return std::string(buffer.data());
}

std::optional<IpAddress> IpAddress::mapped_v4() const {
  static constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0,    0,
                                                            0, 0, 0, 0, 0xff, 0xff};
  if (!v6 || !std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin())) {
    return std::nullopt;
  }
  return v4(bytes[12], bytes[13], bytes[14], bytes[15]);
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  const std::size_t slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  const int limit = max_prefix(*address);
  int prefix = limit;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    // Decimal digits only: from_chars alone would accept "-0" for a signed type and ignore junk.
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (prefix > limit) return std::nullopt;
  }
  // Host bits are cleared: "10.1.2.3/8" means 10.0.0.0/8.
  for (int bit = prefix; bit < limit; ++bit) {
    address->bytes[static_cast<std::size_t>(bit / 8)] &=
        static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  return Cidr{*address, prefix};
}

bool Cidr::contains(const IpAddress& address) const {
  if (network.v6 == address.v6) return same_prefix(network, address, prefix);
  if (!network.v6) {
    // IPv4 range, IPv6 address: only its mapped form can match.
    const auto embedded = address.mapped_v4();
    return embedded && same_prefix(network, *embedded, prefix);
  }
  // IPv6 range, IPv4 address: compare the address's mapped form (so ::ffff:10.0.0.0/104
  // contains 10.1.2.3).
  return same_prefix(network, to_mapped_v6(address), prefix);
}

std::string Cidr::to_string() const {
  return network.to_string() + "/" + std::to_string(prefix);
}

bool is_always_blocked(const IpAddress& address) {
  if (const auto embedded = address.mapped_v4()) return any_contains(kAlwaysBlockedV4, *embedded);
  return address.v6 ? any_contains(kAlwaysBlockedV6, address)
                    : any_contains(kAlwaysBlockedV4, address);
}

bool is_internal(const IpAddress& address) {
  if (is_always_blocked(address)) return true;
  if (const auto embedded = address.mapped_v4()) return any_contains(kInternalV4, *embedded);
  return address.v6 ? any_contains(kInternalV6, address) : any_contains(kInternalV4, address);
}

bool overlaps_always_blocked(const Cidr& range) {
  if (!range.network.v6) {
    return std::any_of(kAlwaysBlockedV4.begin(), kAlwaysBlockedV4.end(),
                       [&](const Cidr& blocked) { return overlaps(range, blocked); });
  }
  const bool native = std::any_of(kAlwaysBlockedV6.begin(), kAlwaysBlockedV6.end(),
                                  [&](const Cidr& blocked) { return overlaps(range, blocked); });
  return native ||
         std::any_of(kAlwaysBlockedV4.begin(), kAlwaysBlockedV4.end(),
                     [&](const Cidr& blocked) { return overlaps(range, to_mapped_v6(blocked)); });
}

}  // namespace openshell::policy
