// Table tests of the SSRF guard (spec §2.8 steps 8 and 10, §2.9): every mode, every address
// class, the control-plane ports, the loopback operator flag and the exact denial wording.
#include "openshell/proxy/ssrf.hpp"

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

namespace {

using openshell::policy::Cidr;
using openshell::policy::ConnectDecision;
using openshell::policy::IpAddress;
using openshell::proxy::DestinationMode;
using openshell::proxy::SsrfDenialKind;
using openshell::proxy::SsrfOptions;

// The engine's compiled endpoint reduced to what the SSRF guard reads.
class TestEndpoint : public openshell::policy::CompiledEndpoint {
 public:
  explicit TestEndpoint(std::vector<std::string> allowed_ips) {
    source_.host = "test.example";
    source_.allowed_ips = std::move(allowed_ips);
    for (const std::string& entry : source_.allowed_ips) {
      if (std::optional<Cidr> cidr = Cidr::parse(entry)) cidrs_.push_back(*cidr);
    }
  }
  const openshell::policy::Endpoint& source() const override { return source_; }
  bool tls_skip() const override { return false; }
  bool has_allowed_ips() const override { return !source_.allowed_ips.empty(); }
  bool allowed_ips_contain(const IpAddress& address) const override {
    for (const Cidr& cidr : cidrs_) {
      if (cidr.contains(address)) return true;
    }
    return false;
  }
  std::span<const Cidr> allowed_ips() const override { return cidrs_; }

 private:
  openshell::policy::Endpoint source_;
  std::vector<Cidr> cidrs_;
};

std::vector<IpAddress> addresses(const std::vector<std::string>& texts) {
  std::vector<IpAddress> result;
  for (const std::string& text : texts) {
    std::optional<IpAddress> address = IpAddress::parse(text);
    REQUIRE(address.has_value());
    result.push_back(*address);
  }
  return result;
}

struct Case {
  const char* name;
  std::string host;
  uint16_t port;
  std::optional<std::vector<std::string>> allowed_ips;  // nullopt: no primary endpoint config
  bool exact_declared = false;
  SsrfOptions options{};
  std::vector<std::string> resolved;
  DestinationMode mode = DestinationMode::kPublicOnly;
  std::optional<SsrfDenialKind> denied;  // nullopt: allowed
  std::string detail;                    // exact, when denied
};

constexpr SsrfOptions kLoopback{true, false};
constexpr SsrfOptions kDeclaredPrivate{false, true};
constexpr SsrfOptions kBoth{true, true};
constexpr auto kInternal = SsrfDenialKind::kInternalAddress;
constexpr auto kAllowlistFailed = SsrfDenialKind::kAllowedIpsCheckFailed;
constexpr auto kInvalid = SsrfDenialKind::kInvalidAllowedIps;
constexpr auto kDeclaredFailed = SsrfDenialKind::kDeclaredEndpointCheckFailed;
constexpr auto kPublic = DestinationMode::kPublicOnly;
constexpr auto kAllow = DestinationMode::kAllowlist;
constexpr auto kImplicit = DestinationMode::kImplicitIp;
constexpr auto kDeclared = DestinationMode::kDeclaredHost;

std::string internal_detail(const std::string& host, const std::string& ip) {
  return host + " resolves to internal address " + ip + ", connection rejected";
}
std::string blocked_detail(const std::string& host, const std::string& ip) {
  return host + " resolves to always-blocked address " + ip + ", connection rejected";
}
std::string unlisted_detail(const std::string& host, const std::string& ip) {
  return host + " resolves to " + ip + " which is not in allowed_ips, connection rejected";
}
std::string port_detail(int port) {
  return "port " + std::to_string(port) + " is a blocked control-plane port, connection rejected";
}

const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      // ---- public-only (default) -------------------------------------------------------------
      {"public v4", "api.example", 443, {}, false, {}, {"8.8.8.8"}, kPublic, {}, ""},
      {"public v6", "api.example", 443, {}, false, {}, {"2001:4860::8888"}, kPublic, {}, ""},
      {"public mapped", "api.example", 443, {}, false, {}, {"::ffff:8.8.8.8"}, kPublic, {}, ""},
      {"172.32 is public", "api.example", 443, {}, false, {}, {"172.32.0.1"}, kPublic, {}, ""},
      {"several public", "api.example", 443, {}, false, {}, {"8.8.8.8", "2001:4860::8888"},
       kPublic, {}, ""},
      {"control-plane port is fine in public mode", "api.example", 6443, {}, false, {},
       {"8.8.8.8"}, kPublic, {}, ""},
      {"10/8", "h", 443, {}, false, {}, {"10.0.0.1"}, kPublic, kInternal,
       internal_detail("h", "10.0.0.1")},
      {"172.16/12", "h", 443, {}, false, {}, {"172.31.255.254"}, kPublic, kInternal,
       internal_detail("h", "172.31.255.254")},
      {"192.168/16", "h", 443, {}, false, {}, {"192.168.1.1"}, kPublic, kInternal,
       internal_detail("h", "192.168.1.1")},
      {"CGNAT", "h", 443, {}, false, {}, {"100.64.0.1"}, kPublic, kInternal,
       internal_detail("h", "100.64.0.1")},
      {"192.0.0/24", "h", 443, {}, false, {}, {"192.0.0.8"}, kPublic, kInternal,
       internal_detail("h", "192.0.0.8")},
      {"TEST-NET-1", "h", 443, {}, false, {}, {"192.0.2.1"}, kPublic, kInternal,
       internal_detail("h", "192.0.2.1")},
      {"TEST-NET-2", "h", 443, {}, false, {}, {"198.51.100.7"}, kPublic, kInternal,
       internal_detail("h", "198.51.100.7")},
      {"TEST-NET-3", "h", 443, {}, false, {}, {"203.0.113.9"}, kPublic, kInternal,
       internal_detail("h", "203.0.113.9")},
      {"benchmarking", "h", 443, {}, false, {}, {"198.19.0.1"}, kPublic, kInternal,
       internal_detail("h", "198.19.0.1")},
      {"broadcast", "h", 443, {}, false, {}, {"255.255.255.255"}, kPublic, kInternal,
       internal_detail("h", "255.255.255.255")},
      {"loopback v4", "h", 443, {}, false, {}, {"127.0.0.1"}, kPublic, kInternal,
       internal_detail("h", "127.0.0.1")},
      {"loopback v6", "h", 443, {}, false, {}, {"::1"}, kPublic, kInternal,
       internal_detail("h", "::1")},
      {"metadata", "h", 80, {}, false, {}, {"169.254.169.254"}, kPublic, kInternal,
       internal_detail("h", "169.254.169.254")},
      {"unspecified v4", "h", 80, {}, false, {}, {"0.0.0.0"}, kPublic, kInternal,
       internal_detail("h", "0.0.0.0")},
      {"unspecified v6", "h", 80, {}, false, {}, {"::"}, kPublic, kInternal,
       internal_detail("h", "::")},
      {"link-local v6", "h", 80, {}, false, {}, {"fe80::1"}, kPublic, kInternal,
       internal_detail("h", "fe80::1")},
      {"ULA", "h", 80, {}, false, {}, {"fd12:3456::1"}, kPublic, kInternal,
       internal_detail("h", "fd12:3456::1")},
      {"mapped private", "h", 80, {}, false, {}, {"::ffff:10.0.0.1"}, kPublic, kInternal,
       internal_detail("h", IpAddress::parse("::ffff:10.0.0.1")->to_string())},
      {"mapped loopback", "h", 80, {}, false, {}, {"::ffff:127.0.0.1"}, kPublic, kInternal,
       internal_detail("h", IpAddress::parse("::ffff:127.0.0.1")->to_string())},
      {"one bad address denies all", "h", 443, {}, false, {},
       {"8.8.8.8", "10.0.0.1", "1.1.1.1"}, kPublic, kInternal, internal_detail("h", "10.0.0.1")},
      {"first bad address is named", "h", 443, {}, false, {}, {"192.168.0.1", "10.0.0.1"},
       kPublic, kInternal, internal_detail("h", "192.168.0.1")},
      {"endpoint config without allowed_ips stays public", "h", 443, std::vector<std::string>{},
       false, {}, {"10.0.0.1"}, kPublic, kInternal, internal_detail("h", "10.0.0.1")},

      // ---- allowlist (allowed_ips) -----------------------------------------------------------
      {"listed private", "db.corp", 5432, std::vector<std::string>{"10.0.0.0/8"}, false, {},
       {"10.1.2.3"}, kAllow, {}, ""},
      {"listed via mapped form", "db.corp", 5432, std::vector<std::string>{"10.0.0.0/8"}, false,
       {}, {"::ffff:10.1.2.3"}, kAllow, {}, ""},
      {"listed v6", "db.corp", 5432, std::vector<std::string>{"fd00::/8"}, false, {},
       {"fd00::5"}, kAllow, {}, ""},
      {"bare address entry", "db.corp", 5432, std::vector<std::string>{"10.9.9.9"}, false, {},
       {"10.9.9.9"}, kAllow, {}, ""},
      {"unlisted private", "db.corp", 5432, std::vector<std::string>{"10.0.0.0/8"}, false, {},
       {"192.168.1.1"}, kAllow, kAllowlistFailed, unlisted_detail("db.corp", "192.168.1.1")},
      {"unlisted public: the allowlist is exclusive", "db.corp", 443,
       std::vector<std::string>{"10.0.0.0/8"}, false, {}, {"8.8.8.8"}, kAllow, kAllowlistFailed,
       unlisted_detail("db.corp", "8.8.8.8")},
      {"one unlisted denies all", "db.corp", 443, std::vector<std::string>{"10.0.0.0/8"}, false,
       {}, {"10.1.1.1", "11.0.0.1"}, kAllow, kAllowlistFailed,
       unlisted_detail("db.corp", "11.0.0.1")},
      {"loopback under allowlist", "db.corp", 443, std::vector<std::string>{"10.0.0.0/8"}, false,
       {}, {"127.0.0.1"}, kAllow, kAllowlistFailed, blocked_detail("db.corp", "127.0.0.1")},
      {"metadata under allowlist", "db.corp", 80, std::vector<std::string>{"10.0.0.0/8"}, false,
       {}, {"169.254.169.254"}, kAllow, kAllowlistFailed,
       blocked_detail("db.corp", "169.254.169.254")},
      {"etcd port", "db.corp", 2379, std::vector<std::string>{"10.0.0.0/8"}, false, {},
       {"10.1.2.3"}, kAllow, kAllowlistFailed, port_detail(2379)},
      {"etcd peer port", "db.corp", 2380, std::vector<std::string>{"10.0.0.0/8"}, false, {},
       {"10.1.2.3"}, kAllow, kAllowlistFailed, port_detail(2380)},
      {"apiserver port", "db.corp", 6443, std::vector<std::string>{"10.0.0.0/8"}, false, {},
       {"10.1.2.3"}, kAllow, kAllowlistFailed, port_detail(6443)},
      {"kubelet port", "db.corp", 10250, std::vector<std::string>{"10.0.0.0/8"}, false, {},
       {"10.1.2.3"}, kAllow, kAllowlistFailed, port_detail(10250)},
      {"kubelet read-only port", "db.corp", 10255, std::vector<std::string>{"10.0.0.0/8"}, false,
       {}, {"10.1.2.3"}, kAllow, kAllowlistFailed, port_detail(10255)},
      {"allowlist wins over an IP literal", "10.0.0.5", 443,
       std::vector<std::string>{"192.168.0.0/16"}, false, {}, {"10.0.0.5"}, kAllow,
       kAllowlistFailed, unlisted_detail("10.0.0.5", "10.0.0.5")},
      {"allowlist wins over a declared host", "db.corp", 443,
       std::vector<std::string>{"10.0.0.0/8"}, true, kDeclaredPrivate, {"192.168.0.1"}, kAllow,
       kAllowlistFailed, unlisted_detail("db.corp", "192.168.0.1")},
      {"unparsable allowed_ips", "db.corp", 443, std::vector<std::string>{"10.0.0.0/8", "nope"},
       false, {}, {"10.1.2.3"}, kAllow, kInvalid,
       "allowed_ips entry 'nope' is not an IP address or CIDR"},
      {"always-blocked allowed_ips", "db.corp", 443, std::vector<std::string>{"127.0.0.0/8"},
       false, {}, {"8.8.8.8"}, kAllow, kInvalid,
       "allowed_ips entry '127.0.0.0/8' overlaps an always-blocked range (loopback, link-local, "
       "unspecified)"},
      {"allowed_ips covering metadata", "db.corp", 443, std::vector<std::string>{"169.254.0.0/16"},
       false, kLoopback, {"8.8.8.8"}, kAllow, kInvalid,
       "allowed_ips entry '169.254.0.0/16' overlaps an always-blocked range (loopback, "
       "link-local, unspecified)"},

      // ---- implicit allowlist (IP-literal host) ----------------------------------------------
      {"private literal", "10.0.0.5", 8080, {}, false, {}, {"10.0.0.5"}, kImplicit, {}, ""},
      {"public literal", "8.8.8.8", 443, {}, false, {}, {"8.8.8.8"}, kImplicit, {}, ""},
      {"ULA literal", "fd00::1", 443, {}, false, {}, {"fd00::1"}, kImplicit, {}, ""},
      {"literal on control-plane port", "10.0.0.5", 10250, {}, false, {}, {"10.0.0.5"},
       kImplicit, kAllowlistFailed, port_detail(10250)},
      {"literal resolving elsewhere", "10.0.0.5", 443, {}, false, {}, {"10.0.0.6"}, kImplicit,
       kAllowlistFailed, unlisted_detail("10.0.0.5", "10.0.0.6")},
      {"loopback literal is not implicit", "127.0.0.1", 443, {}, false, {}, {"127.0.0.1"},
       kPublic, kInternal, internal_detail("127.0.0.1", "127.0.0.1")},
      {"v6 loopback literal is not implicit", "::1", 443, {}, false, {}, {"::1"}, kPublic,
       kInternal, internal_detail("::1", "::1")},
      {"mapped loopback literal is not implicit", "::ffff:127.0.0.1", 443, {}, false, {},
       {"::ffff:127.0.0.1"}, kPublic, kInternal,
       internal_detail("::ffff:127.0.0.1", IpAddress::parse("::ffff:127.0.0.1")->to_string())},
      {"metadata literal is not implicit", "169.254.169.254", 80, {}, false, {},
       {"169.254.169.254"}, kPublic, kInternal,
       internal_detail("169.254.169.254", "169.254.169.254")},

      // ---- exact declared host ---------------------------------------------------------------
      {"declared host, baseline mode: private denied", "db.corp", 443, {}, true, {},
       {"10.0.0.1"}, kPublic, kInternal, internal_detail("db.corp", "10.0.0.1")},
      {"declared host, HEAD mode: private allowed", "db.corp", 443, {}, true, kDeclaredPrivate,
       {"10.0.0.1", "fd00::1"}, kDeclared, {}, ""},
      {"declared host, HEAD mode: loopback denied", "db.corp", 443, {}, true, kDeclaredPrivate,
       {"10.0.0.1", "127.0.0.1"}, kDeclared, kDeclaredFailed,
       blocked_detail("db.corp", "127.0.0.1")},
      {"declared host, HEAD mode: metadata denied", "db.corp", 80, {}, true, kDeclaredPrivate,
       {"169.254.169.254"}, kDeclared, kDeclaredFailed,
       blocked_detail("db.corp", "169.254.169.254")},
      {"declared host, HEAD mode: control-plane port", "db.corp", 6443, {}, true,
       kDeclaredPrivate, {"10.0.0.1"}, kDeclared, kDeclaredFailed, port_detail(6443)},
      {"HEAD mode without a declared host stays public", "db.corp", 443, {}, false,
       kDeclaredPrivate, {"10.0.0.1"}, kPublic, kInternal, internal_detail("db.corp", "10.0.0.1")},

      // ---- allow_loopback_upstream -----------------------------------------------------------
      {"flag: localhost", "localhost", 8080, {}, false, kLoopback, {"127.0.0.1", "::1"}, kPublic,
       {}, ""},
      {"flag: all of 127/8", "localhost", 8080, {}, false, kLoopback, {"127.5.6.7"}, kPublic, {},
       ""},
      {"flag: mapped loopback", "localhost", 8080, {}, false, kLoopback, {"::ffff:127.0.0.1"},
       kPublic, {}, ""},
      {"flag: public still fine", "api.example", 443, {}, false, kLoopback, {"8.8.8.8"}, kPublic,
       {}, ""},
      {"flag: metadata still denied", "h", 80, {}, false, kLoopback, {"169.254.169.254"}, kPublic,
       kInternal, internal_detail("h", "169.254.169.254")},
      {"flag: link-local v6 still denied", "h", 80, {}, false, kLoopback, {"fe80::1"}, kPublic,
       kInternal, internal_detail("h", "fe80::1")},
      {"flag: unspecified still denied", "h", 80, {}, false, kLoopback, {"127.0.0.1", "0.0.0.0"},
       kPublic, kInternal, internal_detail("h", "0.0.0.0")},
      {"flag: v6 unspecified still denied", "h", 80, {}, false, kLoopback, {"::"}, kPublic,
       kInternal, internal_detail("h", "::")},
      {"flag: mapped metadata still denied", "h", 80, {}, false, kLoopback,
       {"::ffff:169.254.169.254"}, kPublic, kInternal,
       internal_detail("h", IpAddress::parse("::ffff:169.254.169.254")->to_string())},
      {"flag: private still denied", "h", 80, {}, false, kLoopback, {"10.0.0.1"}, kPublic,
       kInternal, internal_detail("h", "10.0.0.1")},
      {"flag: loopback control-plane port", "localhost", 10250, {}, false, kLoopback,
       {"127.0.0.1"}, kPublic, kInternal, port_detail(10250)},
      {"flag: loopback literal becomes implicit", "127.0.0.1", 8080, {}, false, kLoopback,
       {"127.0.0.1"}, kImplicit, {}, ""},
      {"flag: v6 loopback literal becomes implicit", "::1", 8080, {}, false, kLoopback, {"::1"},
       kImplicit, {}, ""},
      {"flag: loopback literal on etcd port", "127.0.0.1", 2379, {}, false, kLoopback,
       {"127.0.0.1"}, kImplicit, kAllowlistFailed, port_detail(2379)},
      {"flag: metadata literal still not implicit", "169.254.169.254", 80, {}, false, kLoopback,
       {"169.254.169.254"}, kPublic, kInternal,
       internal_detail("169.254.169.254", "169.254.169.254")},
      {"flag: allowlist still exclusive", "db.corp", 443, std::vector<std::string>{"10.0.0.0/8"},
       false, kLoopback, {"127.0.0.1"}, kAllow, kAllowlistFailed,
       unlisted_detail("db.corp", "127.0.0.1")},
      {"flag + declared host: loopback allowed", "db.corp", 443, {}, true, kBoth,
       {"127.0.0.1", "10.0.0.1"}, kDeclared, {}, ""},
      {"flag + declared host: metadata denied", "db.corp", 80, {}, true, kBoth,
       {"169.254.169.254"}, kDeclared, kDeclaredFailed,
       blocked_detail("db.corp", "169.254.169.254")},
  };
  return table;
}

}  // namespace

TEST_CASE("ssrf: the table", "[ssrf]") {
  for (const Case& c : cases()) {
    INFO("case: " << c.name);
    std::optional<TestEndpoint> endpoint;
    ConnectDecision decision;
    decision.action = openshell::policy::Action::kAllow;
    decision.exact_declared_host = c.exact_declared;
    if (c.allowed_ips) {
      endpoint.emplace(*c.allowed_ips);
      decision.primary = &*endpoint;
    }
    const std::vector<IpAddress> resolved = addresses(c.resolved);

    auto plan = openshell::proxy::plan_destination(c.host, c.port, decision, c.options);
    if (plan) CHECK(plan.value().mode == c.mode);

    auto result =
        openshell::proxy::check_destination(c.host, c.port, decision, resolved, c.options);
    if (!c.denied) {
      REQUIRE(result.ok());
      CHECK(result.value() == resolved);
    } else {
      REQUIRE_FALSE(result.ok());
      CHECK(result.denial().kind == *c.denied);
      CHECK(result.denial().detail == c.detail);
    }
  }
}

TEST_CASE("ssrf: kind wording matches the spec", "[ssrf]") {
  using openshell::proxy::ssrf_denial_kind_text;
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kInternalAddress) == "internal address");
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kAllowedIpsCheckFailed) ==
        "allowed_ips check failed");
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kInvalidAllowedIps) ==
        "invalid allowed_ips in policy");
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kDeclaredEndpointCheckFailed) ==
        "declared endpoint check failed");
  openshell::proxy::SsrfDenial denial{SsrfDenialKind::kAllowedIpsCheckFailed, "x"};
  CHECK(denial.kind_text() == "allowed_ips check failed");
}

TEST_CASE("ssrf: control-plane ports", "[ssrf]") {
  using openshell::proxy::is_control_plane_port;
  for (int port : {2379, 2380, 6443, 10250, 10255}) {
    CHECK(is_control_plane_port(static_cast<uint16_t>(port)));
  }
  for (int port : {0, 80, 443, 2378, 2381, 6442, 6444, 10249, 10251, 10254, 10256, 65535}) {
    CHECK_FALSE(is_control_plane_port(static_cast<uint16_t>(port)));
  }
}

TEST_CASE("ssrf: invalid allowed_ips is found before resolution", "[ssrf]") {
  TestEndpoint endpoint({"10.0.0.0/33"});
  ConnectDecision decision;
  decision.primary = &endpoint;
  auto plan = openshell::proxy::plan_destination("db.corp", 443, decision, {});
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.denial().kind == SsrfDenialKind::kInvalidAllowedIps);
}

TEST_CASE("ssrf: the plan does not keep the policy alive", "[ssrf]") {
  std::optional<TestEndpoint> endpoint(std::in_place, std::vector<std::string>{"10.0.0.0/8"});
  ConnectDecision decision;
  decision.primary = &*endpoint;
  auto plan = openshell::proxy::plan_destination("db.corp", 5432, decision, {});
  REQUIRE(plan.ok());
  endpoint.reset();  // a policy swap frees the compiled endpoint
  auto ok = openshell::proxy::validate_addresses(plan.value(), addresses({"10.2.3.4"}));
  CHECK(ok.ok());
  auto denied = openshell::proxy::validate_addresses(plan.value(), addresses({"11.2.3.4"}));
  CHECK_FALSE(denied.ok());
}

TEST_CASE("ssrf: no addresses validates to nothing", "[ssrf]") {
  ConnectDecision decision;
  auto result = openshell::proxy::check_destination("h", 443, decision, {}, {});
  REQUIRE(result.ok());
  CHECK(result.value().empty());
}

TEST_CASE("ssrf: mode names", "[ssrf]") {
  using openshell::proxy::destination_mode_name;
  CHECK(destination_mode_name(kPublic) == "public-only");
  CHECK(destination_mode_name(kAllow) == "allowlist");
  CHECK(destination_mode_name(kImplicit) == "implicit-ip");
  CHECK(destination_mode_name(kDeclared) == "declared-host");
}
