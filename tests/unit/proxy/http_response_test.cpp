// Proxy-generated responses (spec §9): exact status lines and bodies, framing that matches the
// body, hostile strings kept inside JSON; and the forward-proxy head rewrite (spec §2.10 step 8).
#include "openshell/proxy/http_response.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "openshell/proxy/http_head.hpp"

namespace proxy = openshell::proxy;
using Json = nlohmann::json;

namespace {

struct Wire {
  std::string status_line;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  std::vector<std::string> all(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : headers) {
      if (proxy::ascii_iequals(n, name)) out.push_back(v);
    }
    return out;
  }
  std::string one(std::string_view name) const {
    const auto values = all(name);
    REQUIRE(values.size() == 1);
    return values.front();
  }
};

Wire split(const std::string& wire) {
  Wire out;
  const size_t end = wire.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  out.body = wire.substr(end + 4);
  std::string_view head(wire.data(), end);
  size_t line_end = head.find("\r\n");
  out.status_line = std::string(head.substr(0, line_end));
  while (line_end != std::string_view::npos) {
    head.remove_prefix(line_end + 2);
    line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const size_t colon = line.find(": ");
    REQUIRE(colon != std::string_view::npos);
    out.headers.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  return out;
}

// Checks the framing every JSON response shares and returns the parsed body.
Json json_of(const std::string& wire, std::string_view status) {
  const Wire w = split(wire);
  CHECK(w.status_line == "HTTP/1.1 " + std::string(status));
  CHECK(w.one("Content-Type") == "application/json");
  CHECK(w.one("Content-Length") == std::to_string(w.body.size()));
  CHECK(w.one("Connection") == "close");
  for (const char c : w.body) {
    REQUIRE(static_cast<unsigned char>(c) < 0x80);  // non-ASCII is \u-escaped
    REQUIRE(c != '\r');
    REQUIRE(c != '\n');
  }
  return Json::parse(w.body);
}

proxy::RequestHead parse_head(std::string_view text) {
  proxy::RequestHeadParser parser;
  const auto progress = parser.feed(text);
  INFO(parser.reason());
  REQUIRE(progress.status == proxy::RequestHeadParser::Status::kComplete);
  return parser.head();
}

}  // namespace

TEST_CASE("responses without a JSON body", "[http_response]") {
  CHECK(proxy::connection_established_response() == "HTTP/1.1 200 Connection Established\r\n\r\n");

  Wire w = split(proxy::head_too_large_response());
  CHECK(w.status_line == "HTTP/1.1 431 Request Header Fields Too Large");
  CHECK(w.body.empty());
  CHECK(w.one("Content-Length") == "0");
  CHECK(w.all("Content-Type").empty());

  w = split(proxy::bad_request_response());
  CHECK(w.status_line == "HTTP/1.1 400 Bad Request");
  CHECK(w.body.empty());
  CHECK(w.all("Content-Type").empty());

  CHECK(proxy::head_error_response(proxy::HeadError::kHeadTooLarge) ==
        proxy::head_too_large_response());
  CHECK(proxy::head_error_response(proxy::HeadError::kObsFold) == proxy::bad_request_response());

  w = split(proxy::https_forward_response());
  CHECK(w.status_line == "HTTP/1.1 400 Bad Request");
  CHECK(w.one("Content-Length") == "27");
  CHECK(w.all("Content-Type").empty());
  CHECK(w.body == "Use CONNECT for HTTPS URLs\n");
  CHECK(w.body.size() == 27);
}

TEST_CASE("CONNECT responses", "[http_response]") {
  CHECK(json_of(proxy::connect_denied_response("api.example.com", 443, "endpoint not allowed"),
                "403 Forbidden") ==
        Json{{"error", "policy_denied"},
             {"detail", "CONNECT api.example.com:443 not permitted by policy"},
             {"reason", "endpoint not allowed"}});
  const Json no_reason = json_of(proxy::connect_denied_response("a", 80, ""), "403 Forbidden");
  CHECK_FALSE(no_reason.contains("reason"));
  CHECK(no_reason["detail"] == "CONNECT a:80 not permitted by policy");

  CHECK(json_of(proxy::connect_ssrf_denied_response("db.internal", 5432, "internal address"),
                "403 Forbidden") ==
        Json{{"error", "ssrf_denied"},
             {"detail", "CONNECT db.internal:5432 blocked: internal address"}});
  CHECK(json_of(proxy::connect_policy_changed_response("a.example", 443), "403 Forbidden") ==
        Json{{"error", "policy_denied"},
             {"detail", "CONNECT a.example:443 not permitted because policy changed"}});
  CHECK(json_of(proxy::tls_termination_unavailable_response(), "503 Service Unavailable") ==
        Json{{"error", "tls_termination_unavailable"},
             {"detail",
              "TLS termination unavailable (CA initialization failed); refusing to tunnel "
              "\xe2\x80\x94 credential rewrite would be bypassed"}});
  CHECK(json_of(proxy::uninspected_credentials_response(), "403 Forbidden") ==
        Json{{"error", "uninspected_credentials"},
             {"detail",
              "credentialed endpoint requires L7 inspection; raw tunnel is not explicitly "
              "allowed"}});
  CHECK(json_of(proxy::unsupported_l7_protocol_response(proxy::UnsupportedL7::kUnknownProtocol),
                "403 Forbidden") ==
        Json{{"error", "unsupported_l7_protocol"},
             {"detail", "Unsupported tunnel protocol for L7-inspected endpoint"}});
  CHECK(json_of(proxy::unsupported_l7_protocol_response(proxy::UnsupportedL7::kH2c),
                "403 Forbidden")["detail"] ==
        "HTTP/2 cleartext upgrade (h2c) is not supported for L7-inspected endpoints");
}

TEST_CASE("in-tunnel responses", "[http_response]") {
  proxy::L7Denial denial;
  denial.policy = "github_api";
  denial.method = "DELETE";
  denial.path = "/repos/o/r";
  denial.host = "api.github.com";
  denial.port = 443;
  denial.binary = "/usr/bin/gh";
  denial.reason = "DELETE /repos/o/r not permitted by policy";
  const std::string wire = proxy::l7_denied_response(denial);
  CHECK(split(wire).one("X-OpenShell-Policy") == "github_api");
  const Json body = json_of(wire, "403 Forbidden");
  CHECK(body == Json{{"error", "policy_denied"},
                     {"policy", "github_api"},
                     {"rule", "DELETE /repos/o/r"},
                     {"detail", "DELETE /repos/o/r not permitted by policy"},
                     {"layer", "l7"},
                     {"protocol", "rest"},
                     {"method", "DELETE"},
                     {"path", "/repos/o/r"},
                     {"host", "api.github.com"},
                     {"port", 443},
                     {"binary", "/usr/bin/gh"},
                     {"rule_missing",
                      {{"type", "rest_allow"},
                       {"layer", "l7"},
                       {"method", "DELETE"},
                       {"path", "/repos/o/r"},
                       {"host", "api.github.com"},
                       {"port", 443},
                       {"binary", "/usr/bin/gh"}}}});
  CHECK(body["port"].is_number_integer());

  CHECK(json_of(proxy::request_authority_mismatch_response(), "403 Forbidden") ==
        Json{{"error", "request_authority_mismatch"},
             {"message", "HTTP request authority does not match the authorized tunnel endpoint"}});
  CHECK(json_of(proxy::credential_unavailable_response(), "500 Internal Server Error") ==
        Json{{"error", "credential_unavailable"},
             {"message", "Credential placeholder could not be resolved"}});
  CHECK(json_of(proxy::credential_endpoint_mismatch_response(), "403 Forbidden") ==
        Json{{"error", "credential_endpoint_mismatch"},
             {"message", "Credential is not authorized for this request endpoint"}});
  CHECK(json_of(proxy::inference_not_allowed_response(), "403 Forbidden") ==
        Json{{"error", "connection not allowed by policy"}});
}

TEST_CASE("forward-proxy and upstream responses", "[http_response]") {
  CHECK(json_of(proxy::unsupported_proxy_scheme_response(), "400 Bad Request") ==
        Json{{"error", "unsupported_proxy_scheme"},
             {"detail", "Forward proxy requests must use http"}});
  CHECK(json_of(proxy::invalid_request_target_response(), "400 Bad Request") ==
        Json{{"error", "invalid_request_target"}, {"detail", "request-target must be canonical"}});
  CHECK(
      json_of(proxy::forward_denied_response("GET", "example.com", 80, "/a"), "403 Forbidden") ==
      Json{{"error", "policy_denied"}, {"detail", "GET example.com:80/a not permitted by policy"}});
  CHECK(json_of(proxy::forward_l7_denied_response("POST", "example.com", 8080, "/x", "no rule"),
                "403 Forbidden")["detail"] ==
        "POST example.com:8080/x denied by L7 policy: no rule");
  CHECK(
      json_of(proxy::forward_no_l7_path_response("GET", "h", 80, "/p"), "403 Forbidden") ==
      Json{{"error", "policy_denied"}, {"detail", "GET h:80/p did not match an L7 endpoint path"}});
  CHECK(json_of(proxy::forward_ssrf_denied_response("GET", "10.0.0.1", 80, "internal address"),
                "403 Forbidden") ==
        Json{{"error", "ssrf_denied"}, {"detail", "GET 10.0.0.1:80 blocked: internal address"}});
  CHECK(json_of(proxy::upstream_unreachable_response("example.com", 80), "502 Bad Gateway") ==
        Json{{"error", "upstream_unreachable"}, {"detail", "connection to example.com:80 failed"}});
  CHECK(json_of(proxy::upstream_timeout_response("example.com", 443), "504 Gateway Timeout") ==
        Json{{"error", "upstream_timeout"}, {"detail", "connection to example.com:443 timed out"}});
  CHECK(json_of(proxy::proxy_overloaded_response(), "503 Service Unavailable") ==
        Json{{"error", "proxy_overloaded"}, {"detail", "too many concurrent connections"}});
}

TEST_CASE("hostile strings stay inside JSON strings", "[http_response]") {
  const std::string hostile =
      "evil\"}, \"x\": 1\r\nX-Injected: yes\r\n\r\n<script>\\ caf\xc3\xa9 \x01";
  const std::string wire = proxy::forward_l7_denied_response("GET", hostile, 80, hostile, hostile);
  const Wire w = split(wire);
  CHECK(w.all("X-Injected").empty());
  CHECK(w.headers.size() == 3);
  const Json body = json_of(wire, "403 Forbidden");
  CHECK(body.size() == 2);
  CHECK(body["detail"] == "GET " + hostile + ":80" + hostile + " denied by L7 policy: " + hostile);

  proxy::L7Denial denial;
  denial.policy = "p\r\nSet-Cookie: a=b";
  denial.method = "GET";
  denial.path = hostile;
  denial.host = hostile;
  denial.binary = hostile;
  denial.reason = hostile;
  const std::string l7 = proxy::l7_denied_response(denial);
  const Wire lw = split(l7);
  CHECK(lw.all("Set-Cookie").empty());
  CHECK(lw.one("X-OpenShell-Policy") == "p??Set-Cookie: a=b");
  const Json l7_body = json_of(l7, "403 Forbidden");
  CHECK(l7_body["policy"] == denial.policy);
  CHECK(l7_body["rule_missing"]["path"] == hostile);

  // Invalid UTF-8 from a client becomes U+FFFD rather than an exception or raw bytes.
  const Json replaced =
      json_of(proxy::connect_denied_response("a", 1, "bad \xff\xfe utf8"), "403 Forbidden");
  CHECK(replaced["reason"] == "bad \xef\xbf\xbd\xef\xbf\xbd utf8");
}

TEST_CASE("rewrite_forward_head: origin form, hop-by-hop removal, Host and Via",
          "[http_response]") {
  const proxy::RequestHead head = parse_head(
      "POST http://Example.com:80/api?x=1 HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "User-Agent: curl/8\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
      "Connection: keep-alive, X-Hop\r\n"
      "X-Hop: secret\r\n"
      "Keep-Alive: timeout=5\r\n"
      "TE: trailers\r\n"
      "Upgrade: websocket\r\n"
      "Transfer-Encoding: chunked\r\n"
      "Trailer: X-Sum\r\n"
      "Accept: */*\r\n\r\n");
  const auto uri = proxy::parse_proxy_uri(head.target);
  REQUIRE(uri.ok());
  const std::string out =
      proxy::rewrite_forward_head(head, *uri, "/api?x=1", proxy::UpstreamConnection::kClose);
  CHECK(out ==
        "POST /api?x=1 HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "User-Agent: curl/8\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Trailer: X-Sum\r\n"
        "Accept: */*\r\n"
        "Via: 1.1 openshell\r\n"
        "Connection: close\r\n\r\n");
  // The result is itself a valid head.
  CHECK(parse_head(out).chunked);
}

TEST_CASE("rewrite_forward_head: Host forms, existing Via, keep-alive, HTTP/1.0",
          "[http_response]") {
  proxy::RequestHead head =
      parse_head("GET http://[::1]:8080 HTTP/1.1\r\nHost: wrong.example\r\nVia: 1.1 corp\r\n\r\n");
  auto uri = proxy::parse_proxy_uri(head.target);
  REQUIRE(uri.ok());
  CHECK(proxy::rewrite_forward_head(head, *uri, "", proxy::UpstreamConnection::kKeepAlive) ==
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nVia: 1.1 corp\r\nConnection: keep-alive\r\n\r\n");

  head = parse_head("GET http://example.com:8080/x HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
  uri = proxy::parse_proxy_uri(head.target);
  REQUIRE(uri.ok());
  CHECK(proxy::rewrite_forward_head(head, *uri, "/x", proxy::UpstreamConnection::kClose) ==
        "GET /x HTTP/1.0\r\nHost: example.com:8080\r\nContent-Length: 0\r\n"
        "Via: 1.0 openshell\r\nConnection: close\r\n\r\n");
}
