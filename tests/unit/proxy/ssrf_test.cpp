// Table tests of the SSRF guard (spec §2.8 steps 8 and 10, §2.9): mode selection, every address
// class in every mode, the control-plane ports, the loopback operator flag, the exact wording.
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

constexpr SsrfOptions kDefault{};
constexpr SsrfOptions kLoopback{true, false};
constexpr SsrfOptions kDeclaredPrivate{false, true};
constexpr SsrfOptions kBoth{true, true};
constexpr auto kPublic = DestinationMode::kPublicOnly;
constexpr auto kAllow = DestinationMode::kAllowlist;
constexpr auto kImplicit = DestinationMode::kImplicitIp;
constexpr auto kDeclared = DestinationMode::kDeclaredHost;

// What validation should say; the detail text follows from it.
enum class Expect { kOk, kInternal, kAlwaysBlocked, kUnlisted, kPort };

// One connection to check: policy side (allowed_ips, declared host), options, resolution.
struct Setup {
  std::optional<std::vector<std::string>> allowed_ips;  // nullopt: no endpoint config
  bool declared = false;
  SsrfOptions options{};
};

const Setup kNoConfig{};
const Setup kAllowlist{std::vector<std::string>{"10.0.0.0/8", "fd00::/8", "203.0.113.7"}};

IpAddress ip(const std::string& text) {
  std::optional<IpAddress> address = IpAddress::parse(text);
  REQUIRE(address.has_value());
  return *address;
}

SsrfDenialKind kind_of(DestinationMode mode) {
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

std::string detail_for(Expect expect, const std::string& host, uint16_t port,
                       const IpAddress& address) {
  const std::string text = address.to_string();
  switch (expect) {
    case Expect::kOk:
      return "";
    case Expect::kInternal:
      return host + " resolves to internal address " + text + ", connection rejected";
    case Expect::kAlwaysBlocked:
      return host + " resolves to always-blocked address " + text + ", connection rejected";
    case Expect::kUnlisted:
      return host + " resolves to " + text + " which is not in allowed_ips, connection rejected";
    case Expect::kPort:
      return "port " + std::to_string(port) +
             " is a blocked control-plane port, connection rejected";
  }
  return "";
}

// Plans and validates; checks the mode, the verdict, the kind and the exact detail. `resolved`
// is checked in order, and `culprit` names the address the denial must cite.
void check(const Setup& setup, const std::string& host, uint16_t port,
           const std::vector<std::string>& resolved, DestinationMode mode, Expect expect,
           const std::string& culprit = "") {
  INFO("host " << host << " port " << port << " first address " << resolved.front());
  std::optional<TestEndpoint> endpoint;
  ConnectDecision decision;
  decision.action = openshell::policy::Action::kAllow;
  decision.exact_declared_host = setup.declared;
  if (setup.allowed_ips) {
    endpoint.emplace(*setup.allowed_ips);
    decision.primary = &*endpoint;
  }
  std::vector<IpAddress> addresses;
  addresses.reserve(resolved.size());
  for (const std::string& text : resolved)
    addresses.push_back(ip(text));

  auto plan = openshell::proxy::plan_destination(host, port, decision, setup.options);
  REQUIRE(plan.ok());
  CHECK(plan.value().mode == mode);
  auto result = openshell::proxy::validate_addresses(plan.value(), addresses);
  if (expect == Expect::kOk) {
    REQUIRE(result.ok());
    CHECK(result.value() == addresses);
    return;
  }
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == kind_of(mode));
  const IpAddress cited = ip(culprit.empty() ? resolved.front() : culprit);
  CHECK(result.error().detail == detail_for(expect, host, port, cited));
}

}  // namespace

TEST_CASE("ssrf: public-only classifies every range (§2.9)", "[ssrf]") {
  struct Row {
    const char* address;
    Expect by_default;
    Expect with_loopback_flag;
  };
  constexpr Expect kOk = Expect::kOk;
  constexpr Expect kInt = Expect::kInternal;
  const Row rows[] = {
      {"8.8.8.8", kOk, kOk},                   // public examples from the spec
      {"172.32.0.1", kOk, kOk},                //
      {"2001:4860::8888", kOk, kOk},           //
      {"::ffff:8.8.8.8", kOk, kOk},            //
      {"1.1.1.1", kOk, kOk},                   //
      {"100.63.255.255", kOk, kOk},            // just below CGNAT
      {"100.128.0.0", kOk, kOk},               // just above CGNAT
      {"198.20.0.0", kOk, kOk},                // just above 198.18/15
      {"fe00::1", kOk, kOk},                   // outside fc00::/7 and fe80::/10
      {"127.0.0.1", kInt, kOk},                // loopback: always-blocked
      {"127.255.255.254", kInt, kOk},          //
      {"::1", kInt, kOk},                      //
      {"::ffff:127.0.0.1", kInt, kOk},         //
      {"169.254.169.254", kInt, kInt},         // metadata
      {"169.254.0.1", kInt, kInt},             // link-local
      {"::ffff:169.254.169.254", kInt, kInt},  //
      {"fe80::1", kInt, kInt},                 //
      {"febf::1", kInt, kInt},                 // end of fe80::/10
      {"0.0.0.0", kInt, kInt},                 // unspecified
      {"::", kInt, kInt},                      //
      {"::ffff:0.0.0.0", kInt, kInt},          //
      {"10.0.0.1", kInt, kInt},                // RFC 1918
      {"10.255.255.255", kInt, kInt},          //
      {"172.16.0.1", kInt, kInt},              //
      {"172.31.255.254", kInt, kInt},          //
      {"192.168.1.1", kInt, kInt},             //
      {"100.64.0.1", kInt, kInt},              // CGNAT
      {"100.127.255.254", kInt, kInt},         //
      {"192.0.0.8", kInt, kInt},               // IETF protocol assignments
      {"192.0.2.1", kInt, kInt},               // documentation
      {"198.51.100.7", kInt, kInt},            //
      {"203.0.113.9", kInt, kInt},             //
      {"198.18.0.1", kInt, kInt},              // benchmarking
      {"198.19.255.254", kInt, kInt},          //
      {"255.255.255.255", kInt, kInt},         // broadcast
      {"fc00::1", kInt, kInt},                 // ULA
      {"fd12:3456::1", kInt, kInt},            //
      {"::ffff:10.0.0.1", kInt, kInt},         // IPv4-mapped private
      {"::ffff:192.168.0.1", kInt, kInt},      //
      {"::ffff:100.64.0.1", kInt, kInt},       //
  };
  for (const Row& row : rows) {
    check(kNoConfig, "h.example", 443, {row.address}, kPublic, row.by_default);
    Setup flagged = kNoConfig;
    flagged.options = kLoopback;
    check(flagged, "h.example", 443, {row.address}, kPublic, row.with_loopback_flag);
    // A declared host changes nothing in the baseline mode.
    Setup declared = kNoConfig;
    declared.declared = true;
    check(declared, "h.example", 443, {row.address}, kPublic, row.by_default);
  }
}

TEST_CASE("ssrf: allowlist mode (allowed_ips)", "[ssrf]") {
  struct Row {
    const char* address;
    Expect by_default;
    Expect with_loopback_flag;  // the allowlist stays exclusive
  };
  constexpr Expect kOk = Expect::kOk;
  constexpr Expect kOut = Expect::kUnlisted;
  constexpr Expect kBlk = Expect::kAlwaysBlocked;
  const Row rows[] = {
      {"10.1.2.3", kOk, kOk},            // private, listed
      {"::ffff:10.1.2.3", kOk, kOk},     // mapped form of a listed address
      {"fd00::5", kOk, kOk},             // listed v6
      {"203.0.113.7", kOk, kOk},         // bare address entry
      {"203.0.113.8", kOut, kOut},       // its neighbour
      {"192.168.1.1", kOut, kOut},       // private, unlisted
      {"8.8.8.8", kOut, kOut},           // public, unlisted: the allowlist is exclusive
      {"fc00::1", kOut, kOut},           // ULA outside fd00::/8
      {"127.0.0.1", kBlk, kOut},         // loopback: the flag lifts the block, not the list
      {"::1", kBlk, kOut},               //
      {"169.254.169.254", kBlk, kBlk},   // metadata
      {"fe80::1", kBlk, kBlk},           //
      {"0.0.0.0", kBlk, kBlk},           //
      {"::ffff:127.0.0.1", kBlk, kOut},  //
  };
  for (const Row& row : rows) {
    check(kAllowlist, "db.corp", 5432, {row.address}, kAllow, row.by_default);
    Setup flagged = kAllowlist;
    flagged.options = kLoopback;
    check(flagged, "db.corp", 5432, {row.address}, kAllow, row.with_loopback_flag);
  }
  // The allowlist wins over an IP literal and over a declared host.
  check(kAllowlist, "10.0.0.5", 443, {"10.0.0.5"}, kAllow, Expect::kOk);
  check(kAllowlist, "192.168.0.5", 443, {"192.168.0.5"}, kAllow, Expect::kUnlisted);
  Setup declared = kAllowlist;
  declared.declared = true;
  declared.options = kDeclaredPrivate;
  check(declared, "db.corp", 443, {"192.168.0.1"}, kAllow, Expect::kUnlisted);
  // An endpoint config without allowed_ips does not select the mode.
  check(Setup{std::vector<std::string>{}}, "h", 443, {"10.0.0.1"}, kPublic, Expect::kInternal);
}

TEST_CASE("ssrf: implicit allowlist for an IP-literal host", "[ssrf]") {
  check(kNoConfig, "10.0.0.5", 8080, {"10.0.0.5"}, kImplicit, Expect::kOk);
  check(kNoConfig, "8.8.8.8", 443, {"8.8.8.8"}, kImplicit, Expect::kOk);
  check(kNoConfig, "fd00::1", 443, {"fd00::1"}, kImplicit, Expect::kOk);
  check(kNoConfig, "::ffff:10.0.0.5", 443, {"::ffff:10.0.0.5"}, kImplicit, Expect::kOk);
  check(kNoConfig, "10.0.0.5", 443, {"10.0.0.6"}, kImplicit, Expect::kUnlisted);
  // Always-blocked literals are not implicit: public-only rejects them.
  for (const char* literal :
       {"127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "::", "0.0.0.0", "fe80::1"}) {
    check(kNoConfig, literal, 443, {literal}, kPublic, Expect::kInternal);
  }
  // With the loopback flag, loopback literals are implicit; the rest stay blocked.
  const Setup flagged{std::nullopt, false, kLoopback};
  check(flagged, "127.0.0.1", 8080, {"127.0.0.1"}, kImplicit, Expect::kOk);
  check(flagged, "::1", 8080, {"::1"}, kImplicit, Expect::kOk);
  check(flagged, "169.254.169.254", 80, {"169.254.169.254"}, kPublic, Expect::kInternal);
  check(flagged, "0.0.0.0", 80, {"0.0.0.0"}, kPublic, Expect::kInternal);
}

TEST_CASE("ssrf: exact declared host", "[ssrf]") {
  const Setup baseline{std::nullopt, true, kDefault};
  const Setup head{std::nullopt, true, kDeclaredPrivate};
  const Setup head_loopback{std::nullopt, true, kBoth};
  // Baseline (our default): a declared host re-admits nothing.
  check(baseline, "db.corp", 443, {"10.0.0.1"}, kPublic, Expect::kInternal);
  // HEAD mode: private ranges allowed, always-blocked not.
  check(head, "db.corp", 443, {"10.0.0.1", "fd00::1", "8.8.8.8"}, kDeclared, Expect::kOk);
  check(head, "db.corp", 443, {"10.0.0.1", "127.0.0.1"}, kDeclared, Expect::kAlwaysBlocked,
        "127.0.0.1");
  check(head, "db.corp", 80, {"169.254.169.254"}, kDeclared, Expect::kAlwaysBlocked);
  check(head, "db.corp", 80, {"fe80::1"}, kDeclared, Expect::kAlwaysBlocked);
  check(head_loopback, "db.corp", 443, {"127.0.0.1", "10.0.0.1"}, kDeclared, Expect::kOk);
  check(head_loopback, "db.corp", 80, {"169.254.169.254"}, kDeclared, Expect::kAlwaysBlocked);
  // HEAD mode needs the declared host.
  const Setup undeclared{std::nullopt, false, kDeclaredPrivate};
  check(undeclared, "db.corp", 443, {"10.0.0.1"}, kPublic, Expect::kInternal);
}

TEST_CASE("ssrf: control-plane ports", "[ssrf]") {
  using openshell::proxy::is_control_plane_port;
  for (int port : {2379, 2380, 6443, 10250, 10255}) {
    const auto p = static_cast<uint16_t>(port);
    CHECK(is_control_plane_port(p));
    check(kAllowlist, "db.corp", p, {"10.1.2.3"}, kAllow, Expect::kPort);
    check(kNoConfig, "10.0.0.5", p, {"10.0.0.5"}, kImplicit, Expect::kPort);
    check(Setup{std::nullopt, true, kDeclaredPrivate}, "db.corp", p, {"10.0.0.1"}, kDeclared,
          Expect::kPort);
    // Public destinations on these ports are ordinary services.
    check(kNoConfig, "api.example", p, {"8.8.8.8"}, kPublic, Expect::kOk);
    // Loopback opened by the operator keeps the node's own control plane closed.
    check(Setup{std::nullopt, false, kLoopback}, "localhost", p, {"127.0.0.1"}, kPublic,
          Expect::kPort);
    check(Setup{std::nullopt, false, kLoopback}, "127.0.0.1", p, {"127.0.0.1"}, kImplicit,
          Expect::kPort);
  }
  for (int port : {0, 80, 443, 2378, 2381, 6442, 6444, 10249, 10251, 10254, 10256, 65535}) {
    CHECK_FALSE(is_control_plane_port(static_cast<uint16_t>(port)));
  }
}

TEST_CASE("ssrf: one bad address denies the whole connection", "[ssrf]") {
  check(kNoConfig, "h", 443, {"8.8.8.8", "10.0.0.1", "1.1.1.1"}, kPublic, Expect::kInternal,
        "10.0.0.1");
  check(kNoConfig, "h", 443, {"192.168.0.1", "10.0.0.1"}, kPublic, Expect::kInternal,
        "192.168.0.1");
  check(kAllowlist, "h", 443, {"10.1.1.1", "11.0.0.1"}, kAllow, Expect::kUnlisted, "11.0.0.1");
  check(kAllowlist, "h", 443, {"10.1.1.1", "169.254.169.254"}, kAllow, Expect::kAlwaysBlocked,
        "169.254.169.254");
  const Setup flagged{std::nullopt, false, kLoopback};
  check(flagged, "localhost", 8080, {"127.0.0.1", "::1"}, kPublic, Expect::kOk);
  check(flagged, "h", 8080, {"127.0.0.1", "0.0.0.0"}, kPublic, Expect::kInternal, "0.0.0.0");
}

TEST_CASE("ssrf: invalid allowed_ips deny before resolution", "[ssrf]") {
  struct Row {
    std::vector<std::string> entries;
    std::string detail;
  };
  const std::string kBlocked =
      " falls within always-blocked range (loopback/link-local/unspecified)";
  const Row rows[] = {
      {{"10.0.0.0/8", "nope"}, "invalid CIDR/IP in allowed_ips: nope"},
      {{"10.0.0.0/33"}, "invalid CIDR/IP in allowed_ips: 10.0.0.0/33"},
      {{"10.0.0.0/8", "127.0.0.0/8"}, "allowed_ips entry 127.0.0.0/8" + kBlocked},
      {{"169.254.0.0/16"}, "allowed_ips entry 169.254.0.0/16" + kBlocked},
      {{"0.0.0.0/0"}, "allowed_ips entry 0.0.0.0/0" + kBlocked},
      {{"fe80::/64"}, "allowed_ips entry fe80::/64" + kBlocked},
      {{"::1"}, "allowed_ips entry ::1" + kBlocked},
  };
  for (const Row& row : rows) {
    TestEndpoint endpoint(row.entries);
    ConnectDecision decision;
    decision.primary = &endpoint;
    for (const SsrfOptions& options : {kDefault, kLoopback}) {
      auto plan = openshell::proxy::plan_destination("db.corp", 443, decision, options);
      REQUIRE_FALSE(plan.ok());
      CHECK(plan.error().kind == SsrfDenialKind::kInvalidAllowedIps);
      CHECK(plan.error().detail == row.detail);
      auto combined = openshell::proxy::check_destination("db.corp", 443, decision, {}, options);
      REQUIRE_FALSE(combined.ok());
      CHECK(combined.error().kind == SsrfDenialKind::kInvalidAllowedIps);
    }
  }
}

TEST_CASE("ssrf: check_destination is plan + validate", "[ssrf]") {
  TestEndpoint endpoint({"10.0.0.0/8"});
  ConnectDecision decision;
  decision.primary = &endpoint;
  const std::vector<IpAddress> good{ip("10.0.0.1")};
  const std::vector<IpAddress> bad{ip("10.0.0.1"), ip("11.0.0.1")};
  auto ok = openshell::proxy::check_destination("db.corp", 443, decision, good, kDefault);
  REQUIRE(ok.ok());
  CHECK(ok.value() == good);
  auto denied = openshell::proxy::check_destination("db.corp", 443, decision, bad, kDefault);
  REQUIRE_FALSE(denied.ok());
  CHECK(denied.error().kind_text() == "allowed_ips check failed");
  // No addresses: nothing to dial (the resolver never returns an empty success).
  auto empty = openshell::proxy::check_destination("h", 443, ConnectDecision{}, {}, kDefault);
  REQUIRE(empty.ok());
  CHECK(empty.value().empty());
}

TEST_CASE("ssrf: the plan does not keep the policy alive", "[ssrf]") {
  std::optional<TestEndpoint> endpoint(std::in_place, std::vector<std::string>{"10.0.0.0/8"});
  ConnectDecision decision;
  decision.primary = &*endpoint;
  auto plan = openshell::proxy::plan_destination("db.corp", 5432, decision, kDefault);
  REQUIRE(plan.ok());
  endpoint.reset();  // a policy swap frees the compiled endpoint
  const std::vector<IpAddress> inside{ip("10.2.3.4")};
  const std::vector<IpAddress> outside{ip("11.2.3.4")};
  CHECK(openshell::proxy::validate_addresses(plan.value(), inside).ok());
  CHECK_FALSE(openshell::proxy::validate_addresses(plan.value(), outside).ok());
}

TEST_CASE("ssrf: wording of kinds and modes", "[ssrf]") {
  using openshell::proxy::destination_mode_name;
  using openshell::proxy::ssrf_denial_kind_text;
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kInternalAddress) == "internal address");
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kAllowedIpsCheckFailed) ==
        "allowed_ips check failed");
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kInvalidAllowedIps) ==
        "invalid allowed_ips in policy");
  CHECK(ssrf_denial_kind_text(SsrfDenialKind::kDeclaredEndpointCheckFailed) ==
        "declared endpoint check failed");
  CHECK(destination_mode_name(kPublic) == "public-only");
  CHECK(destination_mode_name(kAllow) == "allowlist");
  CHECK(destination_mode_name(kImplicit) == "implicit-ip");
  CHECK(destination_mode_name(kDeclared) == "declared-host");
}
