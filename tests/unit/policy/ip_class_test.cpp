// IP classification (proxy-spec §2.9): every range's first and last address and the neighbours just
// outside, their IPv4-mapped forms, CIDR parsing and matching, and overlap with always-blocked.
#include "openshell/policy/ip_class.hpp"

#include <catch2/catch.hpp>
#include <string>

using openshell::policy::Cidr;
using openshell::policy::IpAddress;
using openshell::policy::is_always_blocked;
using openshell::policy::is_internal;
using openshell::policy::overlaps_always_blocked;

namespace {

IpAddress ip(std::string_view text) {
  auto parsed = IpAddress::parse(text);
  INFO("address: " << text);
  REQUIRE(parsed);
  return *parsed;
}

Cidr net(std::string_view text) {
  auto parsed = Cidr::parse(text);
  INFO("cidr: " << text);
  REQUIRE(parsed);
  return *parsed;
}

struct Case {
  const char* address;
  bool always_blocked;
  bool internal;
};

// IPv4 boundaries. Each is also checked in its ::ffff: form, which must classify the same.
constexpr Case kV4Cases[] = {
    // always-blocked: 127.0.0.0/8
    {"126.255.255.255", false, false},
    {"127.0.0.0", true, true},
    {"127.0.0.1", true, true},
    {"127.255.255.255", true, true},
    {"128.0.0.0", false, false},
    // always-blocked: 169.254.0.0/16
    {"169.253.255.255", false, false},
    {"169.254.0.0", true, true},
    {"169.254.169.254", true, true},
    {"169.254.255.255", true, true},
    {"169.255.0.0", false, false},
    // always-blocked: 0.0.0.0 only (not 0.0.0.0/8)
    {"0.0.0.0", true, true},
    {"0.0.0.1", false, false},
    // internal: 10.0.0.0/8
    {"9.255.255.255", false, false},
    {"10.0.0.0", false, true},
    {"10.255.255.255", false, true},
    {"11.0.0.0", false, false},
    // internal: 172.16.0.0/12
    {"172.15.255.255", false, false},
    {"172.16.0.0", false, true},
    {"172.31.255.255", false, true},
    {"172.32.0.0", false, false},
    {"172.32.0.1", false, false},  // spec's public example
    // internal: 192.168.0.0/16
    {"192.167.255.255", false, false},
    {"192.168.0.0", false, true},
    {"192.168.255.255", false, true},
    {"192.169.0.0", false, false},
    // internal: 100.64.0.0/10 (CGNAT)
    {"100.63.255.255", false, false},
    {"100.64.0.0", false, true},
    {"100.127.255.255", false, true},
    {"100.128.0.0", false, false},
    // internal: 192.0.0.0/24 (IETF protocol assignments)
    {"191.255.255.255", false, false},
    {"192.0.0.0", false, true},
    {"192.0.0.255", false, true},
    {"192.0.1.0", false, false},
    // internal: 192.0.2.0/24 (TEST-NET-1)
    {"192.0.1.255", false, false},
    {"192.0.2.0", false, true},
    {"192.0.2.255", false, true},
    {"192.0.3.0", false, false},
    // internal: 198.51.100.0/24 (TEST-NET-2)
    {"198.51.99.255", false, false},
    {"198.51.100.0", false, true},
    {"198.51.100.255", false, true},
    {"198.51.101.0", false, false},
    // internal: 203.0.113.0/24 (TEST-NET-3)
    {"203.0.112.255", false, false},
    {"203.0.113.0", false, true},
    {"203.0.113.255", false, true},
    {"203.0.114.0", false, false},
    // internal: 198.18.0.0/15 (benchmarking)
    {"198.17.255.255", false, false},
    {"198.18.0.0", false, true},
    {"198.19.255.255", false, true},
    {"198.20.0.0", false, false},
    // internal: 255.255.255.255 only
    {"255.255.255.254", false, false},
    {"255.255.255.255", false, true},
    // public
    {"8.8.8.8", false, false},
    {"1.1.1.1", false, false},
};

constexpr Case kV6Cases[] = {
    {"::", true, true},
    {"::1", true, true},
    {"::2", false, false},
    // fe80::/10
    {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false},
    {"fe80::", true, true},
    {"fe80::1", true, true},
    {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, true},
    {"fec0::", false, false},
    // fc00::/7
    {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false},
    {"fc00::", false, true},
    {"fd12:3456::1", false, true},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, true},
    {"fe00::", false, false},
    // public, including the spec's examples
    {"2001:4860::8888", false, false},
    {"::ffff:8.8.8.8", false, false},
    {"2001:db8::1", false, false},
    // IPv4-compatible (deprecated, not mapped): not an IPv4 address to the kernel
    {"::127.0.0.1", false, false},
};

}  // namespace

TEST_CASE("IPv4 range boundaries, plain and IPv4-mapped") {
  for (const Case& c : kV4Cases) {
    INFO("address: " << c.address);
    const IpAddress plain = ip(c.address);
    CHECK_FALSE(plain.v6);
    CHECK(is_always_blocked(plain) == c.always_blocked);
    CHECK(is_internal(plain) == c.internal);

    const IpAddress mapped = ip(std::string("::ffff:") + c.address);
    CHECK(mapped.v6);
    CHECK(is_always_blocked(mapped) == c.always_blocked);
    CHECK(is_internal(mapped) == c.internal);
  }
}

TEST_CASE("IPv6 range boundaries") {
  for (const Case& c : kV6Cases) {
    INFO("address: " << c.address);
    const IpAddress address = ip(c.address);
    CHECK(address.v6);
    CHECK(is_always_blocked(address) == c.always_blocked);
    CHECK(is_internal(address) == c.internal);
  }
}

TEST_CASE("mapped forms written in hex classify like IPv4") {
  CHECK(is_always_blocked(ip("::ffff:7f00:1")));     // 127.0.0.1
  CHECK(is_always_blocked(ip("::ffff:a9fe:a9fe")));  // 169.254.169.254
  CHECK(is_always_blocked(ip("::ffff:0:0")));        // 0.0.0.0
  CHECK(is_internal(ip("::ffff:a00:1")));            // 10.0.0.1
  CHECK_FALSE(is_internal(ip("::ffff:808:808")));    // 8.8.8.8
}

TEST_CASE("address parsing accepts canonical text and round-trips") {
  CHECK(ip("1.2.3.4").to_string() == "1.2.3.4");
  CHECK(ip("0.0.0.0").to_string() == "0.0.0.0");
  CHECK(ip("::1").to_string() == "::1");
  CHECK(ip("0:0:0:0:0:0:0:1").to_string() == "::1");
  CHECK(ip("FE80::AbC").to_string() == "fe80::abc");
  CHECK(ip("::ffff:1.2.3.4").to_string() == "::ffff:1.2.3.4");
  CHECK(ip("1.2.3.4") == ip("1.2.3.4"));
  CHECK_FALSE(ip("1.2.3.4") == ip("::ffff:1.2.3.4"));  // a mapped address is not the same value
  const IpAddress four = ip("10.20.30.40");
  CHECK(four.bytes[0] == 10);
  CHECK(four.bytes[3] == 40);
  CHECK(four.bytes[4] == 0);
}

TEST_CASE("address parsing rejects anything but a bare address") {
  const std::string with_nul("1.2.3.4\0junk", 12);
  for (const std::string_view bad :
       {std::string_view(""),
        std::string_view("[::1]"),
        std::string_view("::1]"),
        std::string_view("[::1"),
        std::string_view("fe80::1%eth0"),
        std::string_view("fe80::1%1"),
        std::string_view(" 1.2.3.4"),
        std::string_view("1.2.3.4 "),
        std::string_view("1.2.3.4\n"),
        std::string_view("01.2.3.4"),
        std::string_view("1.2.3"),
        std::string_view("1.2.3.4.5"),
        std::string_view("256.0.0.1"),
        std::string_view("0x7f.0.0.1"),
        std::string_view("2130706433"),
        std::string_view("1.2.3.4/32"),
        std::string_view("1.2.3.4:80"),
        std::string_view("example.com"),
        std::string_view("1::2::3"),
        std::string_view(":::"),
        std::string_view("1:2:3:4:5:6:7:8:9"),
        std::string_view("::ffff:1.2.3"),
        std::string_view(with_nul),
        std::string_view("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb")}) {
    INFO("text: " << bad);
    CHECK_FALSE(IpAddress::parse(bad));
  }
}

TEST_CASE("mapped_v4 extracts only ::ffff:a.b.c.d") {
  const auto inner = ip("::ffff:192.168.1.2").mapped_v4();
  REQUIRE(inner);
  CHECK_FALSE(inner->v6);
  CHECK(inner->to_string() == "192.168.1.2");
  CHECK_FALSE(ip("::192.168.1.2").mapped_v4());
  CHECK_FALSE(ip("192.168.1.2").mapped_v4());
  CHECK_FALSE(ip("::1").mapped_v4());
  CHECK_FALSE(ip("1::ffff:1.2.3.4").mapped_v4());
}

TEST_CASE("CIDR parsing") {
  CHECK(net("10.0.0.0/8").to_string() == "10.0.0.0/8");
  CHECK(net("10.1.2.3/8").to_string() == "10.0.0.0/8");  // host bits masked
  CHECK(net("172.31.255.255/12").to_string() == "172.16.0.0/12");
  CHECK(net("1.2.3.4").prefix == 32);
  CHECK(net("1.2.3.4").to_string() == "1.2.3.4/32");
  CHECK(net("::1").prefix == 128);
  CHECK(net("fd00::/8").to_string() == "fd00::/8");
  CHECK(net("fdff::1/7").to_string() == "fc00::/7");
  CHECK(net("0.0.0.0/0").to_string() == "0.0.0.0/0");
  CHECK(net("::/0").to_string() == "::/0");
  CHECK(net("1.2.3.4/32").prefix == 32);
  CHECK(net("::ffff:10.0.0.0/104").to_string() == "::ffff:10.0.0.0/104");

  for (const std::string_view bad :
       {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8",
        "10.0.0.0/ 8", "10.0.0.0/8 ", "10.0.0.0/0x8", "10.0.0.0/1000", "::/129", "[::1]/128",
        "fe80::%eth0/10", "10.0.0/8", "example.com/8", "10.0.0.0 /8"}) {
    INFO("text: " << bad);
    CHECK_FALSE(Cidr::parse(bad));
  }
}

TEST_CASE("CIDR contains, across the IPv4/IPv6-mapped boundary") {
  const Cidr ten = net("10.0.0.0/8");
  CHECK(ten.contains(ip("10.0.0.0")));
  CHECK(ten.contains(ip("10.255.255.255")));
  CHECK_FALSE(ten.contains(ip("9.255.255.255")));
  CHECK_FALSE(ten.contains(ip("11.0.0.0")));
  CHECK(ten.contains(ip("::ffff:10.1.2.3")));  // mapped compared as IPv4
  CHECK_FALSE(ten.contains(ip("::ffff:11.0.0.0")));
  CHECK_FALSE(ten.contains(ip("::10.1.2.3")));  // IPv4-compatible is not mapped
  CHECK_FALSE(ten.contains(ip("a00::1")));

  const Cidr twelve = net("172.16.0.0/12");  // prefix not on a byte boundary
  CHECK(twelve.contains(ip("172.31.255.255")));
  CHECK_FALSE(twelve.contains(ip("172.32.0.0")));
  CHECK_FALSE(twelve.contains(ip("172.15.255.255")));

  const Cidr mapped_ten = net("::ffff:10.0.0.0/104");
  CHECK(mapped_ten.contains(ip("10.1.2.3")));  // and vice versa
  CHECK(mapped_ten.contains(ip("::ffff:10.1.2.3")));
  CHECK_FALSE(mapped_ten.contains(ip("11.0.0.0")));
  CHECK(net("::ffff:0:0/96").contains(ip("8.8.8.8")));

  const Cidr ula = net("fd00::/8");
  CHECK(ula.contains(ip("fdab::1")));
  CHECK_FALSE(ula.contains(ip("fe00::")));
  CHECK_FALSE(ula.contains(ip("10.0.0.1")));

  const Cidr all4 = net("0.0.0.0/0");
  CHECK(all4.contains(ip("255.255.255.255")));
  CHECK(all4.contains(ip("::ffff:1.2.3.4")));
  CHECK_FALSE(all4.contains(ip("2001:db8::1")));

  const Cidr host = net("8.8.8.8");
  CHECK(host.contains(ip("8.8.8.8")));
  CHECK_FALSE(host.contains(ip("8.8.8.9")));
  CHECK(net("2001:db8::1").contains(ip("2001:db8::1")));
  CHECK_FALSE(net("2001:db8::1").contains(ip("2001:db8::2")));
}

TEST_CASE("overlaps_always_blocked") {
  for (const std::string_view blocked : {"0.0.0.0/0",
                                         "0.0.0.0",
                                         "0.0.0.0/8",
                                         "127.0.0.0/8",
                                         "127.1.2.3/32",
                                         "127.0.0.0/4",
                                         "112.0.0.0/4",
                                         "169.254.0.0/16",
                                         "169.254.169.254",
                                         "169.0.0.0/8",
                                         "128.0.0.0/1",
                                         "::/0",
                                         "::1",
                                         "::",
                                         "::/96",
                                         "fe80::/10",
                                         "fe80::1/128",
                                         "febf::/16",
                                         "fe00::/7",
                                         "8000::/1",
                                         "::ffff:127.0.0.1",
                                         "::ffff:0:0/96",
                                         "::ffff:169.254.1.1/128",
                                         "::ffff:0.0.0.0",
                                         "::ffff:127.0.0.0/104",
                                         "::ffff:96.0.0.0/99"}) {
    INFO("cidr: " << blocked);
    CHECK(overlaps_always_blocked(net(blocked)));
  }
  for (const std::string_view fine :
       {"10.0.0.0/8", "172.16.0.0/12", "192.168.1.0/24", "8.8.8.8", "126.0.0.0/8", "128.0.0.0/8",
        "169.255.0.0/16", "169.253.0.0/16", "0.0.0.1/32", "1.0.0.0/8", "fd00::/8", "2001:db8::/32",
        "::2", "fec0::/10", "::ffff:10.0.0.0/104", "::ffff:8.8.8.8", "::ffff:128.0.0.0/104"}) {
    INFO("cidr: " << fine);
    CHECK_FALSE(overlaps_always_blocked(net(fine)));
  }
}
