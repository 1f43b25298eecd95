// Proxy-generated HTTP responses (spec §9) and the forward-proxy head rewrite (spec §2.10 step 8).
// JSON goes through nlohmann::json so attacker-controlled hosts and paths stay inside strings.
#include "openshell/proxy/http_response.hpp"

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <utility>

#include "openshell/policy/ip_class.hpp"

namespace openshell::proxy {
namespace {

using Json = nlohmann::json;

// nlohmann stores std::string: invalid UTF-8 from a client is replaced (U+FFFD) at dump time.
std::string str(std::string_view s) {
  return std::string(s);
}

std::string dump(const Json& body) {
  try {
    return body.dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
  } catch (const Json::exception&) {
    // Unreachable with the replace handler; the response must still be valid JSON.
    return R"({"error":"internal_error"})";
  }
}

// Header values we write must not be able to split the header block.
std::string sanitize_header_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    out.push_back((c < 0x20 && c != '\t') || c >= 0x7f ? '?' : ch);
  }
  return out;
}

std::string json_response(std::string_view status_line, const Json& body,
                          std::string_view extra_headers = {}) {
  const std::string text = dump(body);
  std::string out;
  out.reserve(text.size() + 160);
  out.append("HTTP/1.1 ").append(status_line).append("\r\n");
  out.append("Content-Type: application/json\r\n");
  out.append("Content-Length: ").append(std::to_string(text.size())).append("\r\n");
  out.append(extra_headers);
  out.append("Connection: close\r\n\r\n");
  out.append(text);
  return out;
}

std::string error_detail(std::string_view status_line, std::string_view error, std::string detail) {
  return json_response(status_line, Json{{"error", str(error)}, {"detail", std::move(detail)}});
}

std::string error_message(std::string_view status_line, std::string_view error,
                          std::string_view message) {
  return json_response(status_line, Json{{"error", str(error)}, {"message", str(message)}});
}

// "host:port", with an IPv6 literal bracketed so the port stays unambiguous.
std::string host_port(std::string_view host, uint16_t port) {
  const auto address = policy::IpAddress::parse(host);
  return format_authority(host, port, address && address->v6, true);
}

constexpr std::string_view kForbidden = "403 Forbidden";
constexpr std::string_view kBadRequest = "400 Bad Request";

std::string forward_detail(std::string_view method, std::string_view host, uint16_t port,
                           std::string_view path) {
  return str(method) + " " + host_port(host, port) + str(path);
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ascii_iequals(s.substr(0, prefix.size()), prefix);
}

bool is_any_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (const std::string_view n : names) {
    if (ascii_iequals(name, n)) return true;
  }
  return false;
}

}  // namespace

std::string connection_established_response() {
  return "HTTP/1.1 200 Connection Established\r\n\r\n";
}

// No body, but explicit framing: the client need not wait for the close to know it has it all.
std::string head_too_large_response() {
  return "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
         "Connection: close\r\n\r\n";
}

std::string bad_request_response() {
  return "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
}

std::string head_error_response(HeadError error) {
  return head_error_status(error) == 431 ? head_too_large_response() : bad_request_response();
}

std::string connect_denied_response(std::string_view host, uint16_t port, std::string_view reason) {
  Json body{{"error", "policy_denied"},
            {"detail", "CONNECT " + host_port(host, port) + " not permitted by policy"}};
  if (!reason.empty()) body["reason"] = str(reason);
  return json_response(kForbidden, body);
}

std::string connect_ssrf_denied_response(std::string_view host, uint16_t port,
                                         std::string_view kind) {
  return error_detail(kForbidden, "ssrf_denied",
                      "CONNECT " + host_port(host, port) + " blocked: " + str(kind));
}

std::string connect_policy_changed_response(std::string_view host, uint16_t port) {
  return error_detail(kForbidden, "policy_denied",
                      "CONNECT " + host_port(host, port) + " not permitted because policy changed");
}

std::string tls_termination_unavailable_response() {
  return error_detail("503 Service Unavailable", "tls_termination_unavailable",
                      "TLS termination unavailable (CA initialization failed); refusing to "
                      "tunnel \u2014 credential rewrite would be bypassed");
}

std::string uninspected_credentials_response() {
  return error_detail(
      kForbidden, "uninspected_credentials",
      "credentialed endpoint requires L7 inspection; raw tunnel is not explicitly allowed");
}

std::string unsupported_l7_protocol_response(UnsupportedL7 kind) {
  return error_detail(kForbidden, "unsupported_l7_protocol",
                      kind == UnsupportedL7::kH2c
                          ? "HTTP/2 cleartext upgrade (h2c) is not supported for L7-inspected "
                            "endpoints"
                          : "Unsupported tunnel protocol for L7-inspected endpoint");
}

std::string l7_denied_response(const L7Denial& d) {
  const std::string rule = str(d.method) + " " + str(d.path);
  const Json body{{"error", "policy_denied"},
                  {"policy", str(d.policy)},
                  {"rule", rule},
                  {"detail", str(d.reason)},
                  {"layer", "l7"},
                  {"protocol", "rest"},
                  {"method", str(d.method)},
                  {"path", str(d.path)},
                  {"host", str(d.host)},
                  {"port", d.port},
                  {"binary", str(d.binary)},
                  {"rule_missing",
                   {{"type", "rest_allow"},
                    {"layer", "l7"},
                    {"method", str(d.method)},
                    {"path", str(d.path)},
                    {"host", str(d.host)},
                    {"port", d.port},
                    {"binary", str(d.binary)}}}};
  return json_response(kForbidden, body,
                       "X-OpenShell-Policy: " + sanitize_header_value(d.policy) + "\r\n");
}

std::string request_authority_mismatch_response() {
  return error_message(kForbidden, "request_authority_mismatch",
                       "HTTP request authority does not match the authorized tunnel endpoint");
}

std::string credential_unavailable_response() {
  return error_message("500 Internal Server Error", "credential_unavailable",
                       "Credential placeholder could not be resolved");
}

std::string credential_body_too_large_response() {
  return error_message("413 Payload Too Large", "credential_body_too_large",
                       "Request body too large for credential rewriting");
}

std::string credential_endpoint_mismatch_response() {
  return error_message(kForbidden, "credential_endpoint_mismatch",
                       "Credential is not authorized for this request endpoint");
}

// The reference announces Content-Length: 27 but sends the 26 bytes of the sentence, so clients
// wait for a byte that never comes; the newline makes the announced length true.
std::string https_forward_response() {
  constexpr std::string_view kBody = "Use CONNECT for HTTPS URLs\n";
  return "HTTP/1.1 400 Bad Request\r\nContent-Length: " + std::to_string(kBody.size()) +
         "\r\nConnection: close\r\n\r\n" + str(kBody);
}

std::string unsupported_proxy_scheme_response() {
  return error_detail(kBadRequest, "unsupported_proxy_scheme",
                      "Forward proxy requests must use http");
}

std::string invalid_request_target_response() {
  return error_detail(kBadRequest, "invalid_request_target", "request-target must be canonical");
}

std::string forward_denied_response(std::string_view method, std::string_view host, uint16_t port,
                                    std::string_view path) {
  return error_detail(kForbidden, "policy_denied",
                      forward_detail(method, host, port, path) + " not permitted by policy");
}

std::string forward_l7_denied_response(std::string_view method, std::string_view host,
                                       uint16_t port, std::string_view path,
                                       std::string_view reason) {
  return error_detail(
      kForbidden, "policy_denied",
      forward_detail(method, host, port, path) + " denied by L7 policy: " + str(reason));
}

std::string forward_no_l7_path_response(std::string_view method, std::string_view host,
                                        uint16_t port, std::string_view path) {
  return error_detail(
      kForbidden, "policy_denied",
      forward_detail(method, host, port, path) + " did not match an L7 endpoint path");
}

std::string forward_ssrf_denied_response(std::string_view method, std::string_view host,
                                         uint16_t port, std::string_view kind) {
  return error_detail(kForbidden, "ssrf_denied",
                      str(method) + " " + host_port(host, port) + " blocked: " + str(kind));
}

std::string upstream_unreachable_response(std::string_view host, uint16_t port) {
  return error_detail("502 Bad Gateway", "upstream_unreachable",
                      "connection to " + host_port(host, port) + " failed");
}

std::string upstream_tls_failed_response(std::string_view host, uint16_t port,
                                         std::string_view why) {
  return error_detail("502 Bad Gateway", "upstream_tls_failed",
                      "TLS to " + host_port(host, port) + " failed: " + std::string(why));
}

std::string upstream_timeout_response(std::string_view host, uint16_t port) {
  return error_detail("504 Gateway Timeout", "upstream_timeout",
                      "connection to " + host_port(host, port) + " timed out");
}

std::string proxy_overloaded_response() {
  return error_detail("503 Service Unavailable", "proxy_overloaded",
                      "too many concurrent connections");
}

std::string inference_not_allowed_response() {
  return json_response(kForbidden, Json{{"error", "connection not allowed by policy"}});
}

std::string rewrite_forward_head(const RequestHead& head, const ProxyUri& uri,
                                 std::string_view origin_target, UpstreamConnection connection) {
  const std::string_view version = http_version_text(head.version);
  std::string out;
  out.reserve(head.head_size + 128);
  out.append(head.method).append(" ");
  out.append(origin_target.empty() ? std::string_view(uri.path) : origin_target);
  out.append(" ").append(version).append("\r\n");
  out.append("Host: ").append(uri.host_header()).append("\r\n");
  bool has_via = false;
  for (const HeaderField& field : head.headers) {
    const std::string_view name = field.name;
    if (is_any_of(name, {"host", "connection", "keep-alive", "te", "upgrade"}) ||
        starts_with_ci(name, "proxy-") || head.connection_has(name)) {
      continue;
    }
    has_via = has_via || ascii_iequals(name, "via");
    out.append(field.name).append(": ").append(field.value).append("\r\n");
  }
  if (!has_via) out.append("Via: ").append(version.substr(5)).append(" openshell\r\n");
  out.append(connection == UpstreamConnection::kClose ? "Connection: close\r\n"
                                                      : "Connection: keep-alive\r\n");
  out.append("\r\n");
  return out;
}

}  // namespace openshell::proxy
