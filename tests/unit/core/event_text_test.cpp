// The human one-line shorthand: exact wording of the common lines, colour only on request, and
// no way for a value to break the line or reach the terminal as a control sequence.
#include <catch2/catch.hpp>
#include <string>

#include "openshell/core/event_format.hpp"
#include "openshell/core/events.hpp"

using namespace openshell::core;  // NOLINT(google-build-using-namespace): test file

namespace {
constexpr int64_t kTime = 1795867200123;  // 2026-11-28T12:00:00.123Z
constexpr CorrelationId kCid{0x1234abcd00000007};
}  // namespace

TEST_CASE("text: the spec's CONNECT denied line") {
  const Event event = events::network_open_denied("httpbin.org", 443, "no matching policy")
                          .with_actor("/usr/bin/curl", 64)
                          .with_time_ms(kTime)
                          .with_cid(kCid);
  CHECK(to_text(event) ==
        "2026-11-28T12:00:00.123Z OCSF NET:OPEN [MED] DENIED /usr/bin/curl(64) -> "
        "httpbin.org:443 [policy:- engine:opa] [reason:no matching policy] "
        "cid=1234abcd00000007");
  std::string line;
  render_text(event, line);
  CHECK(line == to_text(event) + "\n");
}

TEST_CASE("text: allowed, unknown binary, close, bypass") {
  CHECK(
      to_text(events::network_open_allowed("api.github.com", 443, "github").with_time_ms(kTime)) ==
      "2026-11-28T12:00:00.123Z OCSF NET:OPEN [INFO] ALLOWED api.github.com:443 "
      "[policy:github engine:opa]");
  CHECK(to_text(
            events::network_open_allowed("::1", 8080, "p").with_actor("", 9).with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF NET:OPEN [INFO] ALLOWED -(9) -> [::1]:8080 "
        "[policy:p engine:opa]");
  CHECK(to_text(events::network_close("example.com", 443, 10, 20, 30).with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF NET:CLOSE [INFO] example.com:443 "
        "[in:10 out:20 duration:30ms]");
  CHECK(to_text(events::network_bypass("1.2.3.4", 53, "udp", "", 0).with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF NET:REFUSE [MED] DENIED - -> 1.2.3.4:53/udp "
        "[policy:bypass-detect engine:nftables] "
        "[reason:direct connection bypassed HTTP CONNECT proxy]");
}

TEST_CASE("text: HTTP, process, finding, config, lifecycle") {
  CHECK(to_text(events::http_l7_decision(events::L7Decision::kAudit, "GET", "h.io", 443,
                                         "/a?secret=1", "p", "would deny")
                    .with_actor("/bin/x", 5)
                    .with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF HTTP:GET [INFO] AUDIT /bin/x(5) -> GET http://h.io:443/a "
        "[policy:p engine:l7] [reason:would deny]");

  ProcessInfo child;
  child.name = "/usr/bin/python3";
  child.pid = 7;
  CHECK(to_text(events::process_exit(child, 1).with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF PROC:TERMINATE [INFO] /usr/bin/python3(7) [exit:1]");

  CHECK(to_text(events::finding("bypass-detect", "Proxy Bypass Detected", Severity::kHigh,
                                Confidence::kHigh)
                    .with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF FINDING:CREATE [HIGH] \"Proxy Bypass Detected\" "
        "[confidence:High]");

  CHECK(to_text(events::policy_loaded(2, "sha256:ab").with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF CONFIG:LOG [INFO] policy generation 2 loaded "
        "[policy_generation:2 policy_digest:sha256:ab]");
  CHECK(to_text(events::policy_rejected("bad").with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF CONFIG:LOG [MED] FAILED policy rejected; the previous "
        "policy stays active [reason:bad]");
  CHECK(to_text(events::app_lifecycle(AppActivity::kStart, "proxy listening on 127.0.0.1:3128")
                    .with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z OCSF APP:START [INFO] proxy listening on 127.0.0.1:3128");
}

TEST_CASE("text: diagnostics read LEVEL message") {
  CHECK(to_text(events::diagnostic(Level::kWarn, "CIDR broader than /16").with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z WARN  CIDR broader than /16");
  CHECK(to_text(events::diagnostic(Level::kError, "bind failed")
                    .with_field("addr", "127.0.0.1:3128")
                    .with_cid(kCid)
                    .with_time_ms(kTime)) ==
        "2026-11-28T12:00:00.123Z ERROR bind failed [addr:127.0.0.1:3128] cid=1234abcd00000007");
}

TEST_CASE("text: colour only when asked") {
  const Event event = events::network_open_denied("h", 1, "r").with_time_ms(kTime);
  CHECK(to_text(event, false).find('\x1b') == std::string::npos);
  const std::string coloured = to_text(event, true);
  CHECK(coloured.find("\x1b[31mDENIED\x1b[0m") != std::string::npos);
  CHECK(coloured.find("\x1b[33m[MED]\x1b[0m") != std::string::npos);
}

TEST_CASE("text: values cannot inject lines or terminal sequences") {
  std::string hostile = "evil\n2026-01-01T00:00:00.000Z OCSF NET:OPEN [INFO] ALLOWED fake";
  hostile += "\x1b]0;title\x07";
  hostile +=
      "\xc2\x9b"
      "31m";  // C1 CSI
  hostile +=
      "\xe2\x80\xae"
      "gpj";          // right-to-left override
  hostile += "\xff";  // ill-formed
  hostile += "back\\slash caf\xc3\xa9";
  const std::string line =
      to_text(events::network_open_denied(hostile, 443, hostile).with_time_ms(kTime));
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.find('\x1b') == std::string::npos);
  CHECK(line.find('\x07') == std::string::npos);
  CHECK(line.find("\xc2\x9b") == std::string::npos);
  CHECK(line.find("\xe2\x80\xae") == std::string::npos);
  CHECK(line.find("evil\\x0a2026") != std::string::npos);
  CHECK(line.find("\\x1b]0;title\\x07") != std::string::npos);
  CHECK(line.find("\\u009b31m") != std::string::npos);
  CHECK(line.find("\\u202egpj") != std::string::npos);
  CHECK(line.find("\\xff") != std::string::npos);
  CHECK(line.find("back\\\\slash caf\xc3\xa9") != std::string::npos);  // UTF-8 text stays
}
