// JSON shape of every OCSF class openshell emits, parsed back with nlohmann::json.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "openshell/core/event_format.hpp"
#include "openshell/core/events.hpp"

using nlohmann::json;
using namespace openshell::core;  // NOLINT(google-build-using-namespace): test file

namespace {

json parse(const Event& event) {
  std::string line;
  render_json(event, line);
  REQUIRE(!line.empty());
  REQUIRE(line.back() == '\n');
  REQUIRE(line.find('\n') == line.size() - 1);  // exactly one line
  return json::parse(line);
}

void check_common(const json& j, int class_uid, std::string_view cls, int category, int activity_id,
                  std::string_view activity) {
  CHECK(j["class_uid"] == class_uid);
  CHECK(j["class_name"] == cls);
  CHECK(j["category_uid"] == category);
  CHECK(j["activity_id"] == activity_id);
  CHECK(j["activity_name"] == activity);
  CHECK(j["type_uid"] == class_uid * 100 + activity_id);
  CHECK(j["type_name"] == std::string(cls) + ": " + std::string(activity));
  CHECK(j["time"].is_number_integer());
  CHECK(j["metadata"]["version"] == "1.8.0");
  CHECK(j["metadata"]["product"]["name"] == "openshell");
  CHECK(j["metadata"]["product"]["vendor_name"] == "openshell");
  CHECK(j["metadata"]["product"]["version"].is_string());
}

}  // namespace

TEST_CASE("JSON: CONNECT denied (Network Activity 4001 Open)") {
  const auto cid = CorrelationId(0x1234abcd00000007);
  ProcessInfo curl;
  curl.name = "/usr/bin/curl";
  curl.pid = 64;
  curl.cmd_line = "curl https://httpbin.org/";
  curl.sha256 = "ab12";
  curl.lineage = {"/bin/bash", "/usr/bin/openshell"};
  const json j = parse(events::network_open_denied("httpbin.org", 443, "no policy matched")
                           .with_actor(curl)
                           .with_src("127.0.0.1", 40000)
                           .with_cid(cid)
                           .with_time_ms(1795867200123));
  check_common(j, 4001, "Network Activity", 4, 1, "Open");
  CHECK(j["category_name"] == "Network Activity");
  CHECK(j["severity_id"] == 3);
  CHECK(j["severity"] == "Medium");
  CHECK(j["status_id"] == 2);
  CHECK(j["status"] == "Failure");
  CHECK(j["action_id"] == 2);
  CHECK(j["action"] == "Denied");
  CHECK(j["disposition_id"] == 2);
  CHECK(j["disposition"] == "Blocked");
  CHECK(j["time"] == 1795867200123);
  CHECK(j["message"] == "CONNECT denied httpbin.org:443");
  CHECK(j["status_detail"] == "no policy matched");
  CHECK(j["dst_endpoint"] == json{{"domain", "httpbin.org"}, {"port", 443}});
  CHECK(j["src_endpoint"] == json{{"ip", "127.0.0.1"}, {"port", 40000}});
  CHECK(j["firewall_rule"] == json{{"name", "-"}, {"type", "opa"}});
  const json& process = j["actor"]["process"];
  CHECK(process["name"] == "/usr/bin/curl");
  CHECK(process["pid"] == 64);
  CHECK(process["cmd_line"] == "curl https://httpbin.org/");
  CHECK(process["file"]["path"] == "/usr/bin/curl");
  CHECK(process["file"]["name"] == "curl");
  CHECK(process["file"]["hashes"][0]["algorithm"] == "SHA-256");
  CHECK(process["file"]["hashes"][0]["value"] == "ab12");
  CHECK(process["lineage"] == json{"/bin/bash", "/usr/bin/openshell"});
  CHECK(j["metadata"]["correlation_uid"] == "1234abcd00000007");
  CHECK(j["metadata"]["profiles"] == json{"security_control"});
  CHECK_FALSE(j.contains("http_request"));
  CHECK_FALSE(j.contains("unmapped"));
}

TEST_CASE("JSON: CONNECT allowed and SSRF blocked") {
  const json allowed = parse(events::network_open_allowed("api.github.com", 443, "github", true));
  CHECK(allowed["action"] == "Allowed");
  CHECK(allowed["disposition"] == "Allowed");
  CHECK(allowed["status"] == "Success");
  CHECK(allowed["severity"] == "Informational");
  CHECK(allowed["message"] == "CONNECT_L7 allowed api.github.com:443");
  CHECK(allowed["firewall_rule"] == json{{"name", "github"}, {"type", "opa"}});
  CHECK_FALSE(allowed.contains("status_detail"));

  const json internal = parse(events::network_open_blocked(
      "metadata.local", 80, "internal address",
      "metadata.local resolves to internal address 10.0.0.1, connection rejected"));
  CHECK(internal["message"] == "CONNECT blocked: internal address metadata.local:80");
  CHECK(internal["firewall_rule"]["type"] == "ssrf");
  CHECK(internal["action"] == "Denied");

  const json v6 = parse(events::network_open_blocked("::1", 8080, "allowed_ips check failed", "x"));
  CHECK(v6["message"] == "CONNECT blocked: allowed_ips check failed for [::1]:8080");
  CHECK(v6["dst_endpoint"] == json{{"ip", "::1"}, {"port", 8080}});  // a literal goes to ip
}

TEST_CASE("JSON: connection close carries bytes and duration") {
  const json j = parse(events::network_close("example.com", 443, 5000, 700, 1234)
                           .with_dst_ip("93.184.216.34")
                           .with_cid(CorrelationId(9)));
  check_common(j, 4001, "Network Activity", 4, 2, "Close");
  CHECK(j["traffic"]["bytes_in"] == 5000);
  CHECK(j["traffic"]["bytes_out"] == 700);
  CHECK(j["traffic"]["bytes"] == 5700);
  CHECK(j["duration"] == 1234);
  CHECK(j["dst_endpoint"] ==
        json{{"domain", "example.com"}, {"ip", "93.184.216.34"}, {"port", 443}});
  CHECK_FALSE(j.contains("action_id"));
  CHECK_FALSE(j["metadata"].contains("profiles"));
}

TEST_CASE("JSON: bypass refusal") {
  const json j = parse(events::network_bypass("1.2.3.4", 53, "udp", "/usr/bin/dig", 77));
  check_common(j, 4001, "Network Activity", 4, 5, "Refuse");
  CHECK(j["connection_info"]["protocol_name"] == "udp");
  CHECK(j["firewall_rule"] == json{{"name", "bypass-detect"}, {"type", "nftables"}});
  CHECK(j["actor"]["process"]["name"] == "/usr/bin/dig");
  CHECK(j["message"] ==
        "BYPASS_DETECT 1.2.3.4:53 proto=udp binary=/usr/bin/dig action=reject "
        "reason=direct connection bypassed HTTP CONNECT proxy");
}

TEST_CASE("JSON: L7 decision (HTTP Activity 4002) never carries the query") {
  const json deny =
      parse(events::http_l7_decision(events::L7Decision::kDeny, "POST", "api.github.com", 443,
                                     "/repos/x/issues?access_token=SECRET", "github", "no rule"));
  check_common(deny, 4002, "HTTP Activity", 4, 99, "Other");
  CHECK(deny["http_request"]["http_method"] == "POST");
  CHECK(deny["http_request"]["url"] == json{{"scheme", "http"},
                                            {"hostname", "api.github.com"},
                                            {"port", 443},
                                            {"path", "/repos/x/issues"}});
  CHECK(deny["action"] == "Denied");
  CHECK(deny["severity"] == "Medium");
  CHECK(deny["firewall_rule"] == json{{"name", "github"}, {"type", "l7"}});
  CHECK(deny["message"] == "L7_REQUEST deny POST api.github.com:443/repos/x/issues reason=no rule");
  CHECK(deny.dump().find("SECRET") == std::string::npos);

  const json audit = parse(events::http_l7_decision(events::L7Decision::kAudit, "GET", "h", 80,
                                                    "/x", "p", "would deny"));
  CHECK(audit["action"] == "Allowed");
  CHECK(audit["disposition"] == "Detected");
  CHECK(audit["severity"] == "Informational");

  const json status = parse(Event::http_activity(HttpActivity::kGet).with_http_status(502));
  CHECK(status["activity_name"] == "Get");
  CHECK(status["http_response"]["code"] == 502);
}

TEST_CASE("JSON: Process Activity 1007") {
  ProcessInfo child;
  child.name = "/usr/bin/python3";
  child.pid = 4242;
  child.cmd_line = "python3 agent.py";
  const json launch = parse(events::process_launch(child));
  check_common(launch, 1007, "Process Activity", 1, 1, "Launch");
  CHECK(launch["category_name"] == "System Activity");
  CHECK(launch["process"]["name"] == "/usr/bin/python3");
  CHECK(launch["process"]["pid"] == 4242);
  CHECK(launch["process"]["cmd_line"] == "python3 agent.py");
  CHECK_FALSE(launch.contains("exit_code"));

  const json exit = parse(events::process_exit(child, 3));
  check_common(exit, 1007, "Process Activity", 1, 2, "Terminate");
  CHECK(exit["exit_code"] == 3);
}

TEST_CASE("JSON: Detection Finding 2004") {
  Finding info;
  info.uid = "bypass-detect";
  info.title = "Proxy Bypass Detected";
  info.confidence = Confidence::kHigh;
  info.is_alert = true;
  info.remediation = "ensure process honors HTTP_PROXY/HTTPS_PROXY";
  info.evidence = {{"dst_addr", "1.2.3.4"}, {"dst_port", "443"}, {"we\"ird", "v"}};
  const json j = parse(Event::detection(FindingActivity::kCreate)
                           .with_severity(Severity::kHigh)
                           .with_finding(info)
                           .with_action(Action::kDenied, Disposition::kBlocked));
  check_common(j, 2004, "Detection Finding", 2, 1, "Create");
  CHECK(j["category_name"] == "Findings");
  CHECK(j["severity_id"] == 4);
  CHECK(j["finding_info"]["uid"] == "bypass-detect");
  CHECK(j["finding_info"]["title"] == "Proxy Bypass Detected");
  CHECK(j["confidence_id"] == 3);
  CHECK(j["confidence"] == "High");
  CHECK(j["is_alert"] == true);
  CHECK(j["evidences"][0]["data"]["dst_addr"] == "1.2.3.4");
  CHECK(j["evidences"][0]["data"]["we\"ird"] == "v");
  CHECK(j["remediation"]["desc"] == "ensure process honors HTTP_PROXY/HTTPS_PROXY");

  const json made = parse(events::finding("openshell.credentials.traffic_uninspectable",
                                          "Credentials on uninspected traffic", Severity::kHigh,
                                          Confidence::kHigh));
  CHECK(made["is_alert"] == true);
  CHECK(made["disposition"] == "Detected");
  CHECK(made["finding_info"]["uid"] == "openshell.credentials.traffic_uninspectable");
}

TEST_CASE("JSON: Application Lifecycle 6002 and diagnostics") {
  const json start = parse(events::app_lifecycle(AppActivity::kStart, "proxy listening"));
  check_common(start, 6002, "Application Lifecycle", 6, 3, "Start");
  CHECK(start["category_name"] == "Application Activity");
  CHECK(start["app"]["name"] == "openshell");
  CHECK(start["app"]["vendor_name"] == "openshell");
  CHECK(start["message"] == "proxy listening");

  const json warn = parse(events::diagnostic(Level::kWarn, "allowed_ips 10.0.0.0/8 is broad"));
  check_common(warn, 6002, "Application Lifecycle", 6, 99, "Other");
  CHECK(warn["severity"] == "Low");
  CHECK(warn["message"] == "allowed_ips 10.0.0.0/8 is broad");
  CHECK(parse(events::diagnostic(Level::kError, "x"))["severity"] == "High");
  CHECK(parse(events::diagnostic(Level::kInfo, "x"))["severity"] == "Informational");
}

TEST_CASE("JSON: Device Config State Change 5019 for policy loads") {
  const json loaded = parse(events::policy_loaded(3, "sha256:abc"));
  check_common(loaded, 5019, "Device Config State Change", 5, 1, "Log");
  CHECK(loaded["category_name"] == "Discovery");
  CHECK(loaded["status"] == "Success");
  CHECK(loaded["message"] == "policy generation 3 loaded");
  CHECK(loaded["unmapped"]["policy_generation"] == "3");
  CHECK(loaded["unmapped"]["policy_digest"] == "sha256:abc");
  CHECK(loaded["device"]["type_id"] == 0);

  const json rejected =
      parse(events::policy_rejected("p.endpoints[0]: rules list cannot be empty"));
  CHECK(rejected["status"] == "Failure");
  CHECK(rejected["status_detail"] == "p.endpoints[0]: rules list cannot be empty");
  CHECK(rejected["severity"] == "Medium");
}

TEST_CASE("JSON: hostile strings still give one valid line") {
  std::string nasty = "a\"b\\c\nd\re\tf";
  nasty.push_back('\0');
  nasty += "\x01\x7f";
  nasty += "\xff\xc3(";                 // ill-formed UTF-8
  nasty += "\xed\xa0\x80";              // surrogate
  nasty += "caf\xc3\xa9 \xe2\x82\xac";  // well-formed: café €
  const json j = parse(Event::network(NetworkActivity::kOpen)
                           .with_message(nasty)
                           .with_reason(std::string(20000, 'x'))
                           .with_field("key\nwith newline", nasty));
  const std::string message = j["message"];
  CHECK(message.rfind("a\"b\\c\nd\re\tf", 0) == 0);
  CHECK(message.find("caf\xc3\xa9 \xe2\x82\xac") != std::string::npos);
  CHECK(message.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  CHECK(j["unmapped"]["key\nwith newline"] == message);
  const std::string reason = j["status_detail"];
  CHECK(reason.size() < 9000);  // bounded
  CHECK(reason.substr(reason.size() - 3) == "...");
}

TEST_CASE("unmapped fields keep order and replace duplicates") {
  Event event = Event::lifecycle(AppActivity::kOther);
  event.with_field("a", "1").with_field("b", "2").with_field("a", "3");
  REQUIRE(event.unmapped.size() == 2);
  CHECK(event.unmapped[0].first == "a");
  CHECK(*event.field("a") == "3");
  CHECK(event.field("zzz") == nullptr);
  CHECK(to_json(event).find(R"("unmapped":{"a":"3","b":"2"})") != std::string::npos);
}

TEST_CASE("builders: severity drives the level, denied() raises severity") {
  CHECK(Event::network(NetworkActivity::kOpen).level == Level::kInfo);
  CHECK(Event::network(NetworkActivity::kOpen).denied().level == Level::kWarn);
  CHECK(Event::network(NetworkActivity::kOpen).with_severity(Severity::kHigh).denied().severity ==
        Severity::kHigh);
  CHECK(Event::network(NetworkActivity::kOpen).with_severity(Severity::kCritical).level ==
        Level::kError);
  Event named = Event::network(NetworkActivity::kOpen);
  named.with_dst("[2001:db8::1]", 443).with_level(Level::kDebug);
  CHECK(named.dst.ip == "2001:db8::1");
  CHECK(named.dst.domain.empty());
  CHECK(named.level == Level::kDebug);
  CHECK(activity_name(EventClass::kProcessActivity, 5) == "Set User ID");
  CHECK(activity_name(EventClass::kNetworkActivity, 42) == "Unknown");
}

TEST_CASE("redact_query drops query and fragment") {
  CHECK(redact_query("/path?token=abc") == "/path");
  CHECK(redact_query("http://h:80/p?x=1#y") == "http://h:80/p");
  CHECK(redact_query("/p#access_token=z") == "/p");
  CHECK(redact_query("/plain/path") == "/plain/path");
  CHECK(redact_query("?only").empty());
  CHECK(redact_query("").empty());
  static_assert(redact_query("/a?b") == "/a");
  const Event event = Event::http_activity(HttpActivity::kGet)
                          .with_http("GET", "https", "h", 443, "/v1/x?key=SECRET");
  CHECK(event.http->path == "/v1/x");
}
