// Every response the proxy writes itself (spec §9), as complete wire bytes, and the rewrite of a
// forward-proxy request head to origin form (spec §2.10 step 8).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "openshell/proxy/http_head.hpp"

namespace openshell::proxy {

// All JSON responses carry Content-Type: application/json, Content-Length and Connection: close;
// the caller closes the connection after writing one. Strings are JSON-escaped (hosts, paths and
// reasons come from the client) and non-ASCII is written as \u escapes.

// --- No body -----------------------------------------------------------------------------------
std::string connection_established_response();     // "HTTP/1.1 200 Connection Established\r\n\r\n"
std::string head_too_large_response();             // 431, no body
std::string bad_request_response();                // 400, no body
std::string head_error_response(HeadError error);  // 431 or 400 by head_error_status()

// --- CONNECT (spec §2.8) ------------------------------------------------------------------------
// 403 policy_denied "CONNECT {host}:{port} not permitted by policy"; reason omitted when empty.
std::string connect_denied_response(std::string_view host, uint16_t port, std::string_view reason);
// 403 ssrf_denied "CONNECT {host}:{port} blocked: {kind}".
std::string connect_ssrf_denied_response(std::string_view host, uint16_t port,
                                         std::string_view kind);
// 403 policy_denied "CONNECT {host}:{port} not permitted because policy changed".
std::string connect_policy_changed_response(std::string_view host, uint16_t port);
std::string tls_termination_unavailable_response();  // 503
std::string uninspected_credentials_response();      // 403

// 403 unsupported_l7_protocol, written into the tunnel.
enum class UnsupportedL7 {
  kUnknownProtocol,  // "Unsupported tunnel protocol for L7-inspected endpoint"
  kH2c,              // "HTTP/2 cleartext upgrade (h2c) is not supported for L7-inspected endpoints"
};
std::string unsupported_l7_protocol_response(UnsupportedL7 kind);

// --- In-tunnel requests (spec §2.5, §4.5) -------------------------------------------------------
struct L7Denial {
  std::string_view policy;  // policy key; also sent as X-OpenShell-Policy
  std::string_view method;
  std::string_view path;  // canonical, credential-redacted
  std::string_view host;
  uint16_t port = 0;
  std::string_view binary;  // executable path, may be empty
  std::string_view reason;  // deny reason: the body's "detail"
};
std::string l7_denied_response(const L7Denial& denial);  // 403 + X-OpenShell-Policy
std::string request_authority_mismatch_response();       // 403
std::string credential_unavailable_response();           // 500
std::string credential_endpoint_mismatch_response();     // 403
std::string credential_body_too_large_response();        // 413, body over 256 KiB

// --- Forward proxy (spec §2.10) -----------------------------------------------------------------
std::string https_forward_response();             // 400 "Use CONNECT for HTTPS URLs", text
std::string unsupported_proxy_scheme_response();  // 400
std::string invalid_request_target_response();    // 400
// 403 policy_denied "{method} {host}:{port}{path} not permitted by policy".
std::string forward_denied_response(std::string_view method, std::string_view host, uint16_t port,
                                    std::string_view path);
// 403 policy_denied "... denied by L7 policy: {reason}".
std::string forward_l7_denied_response(std::string_view method, std::string_view host,
                                       uint16_t port, std::string_view path,
                                       std::string_view reason);
// 403 policy_denied "... did not match an L7 endpoint path".
std::string forward_no_l7_path_response(std::string_view method, std::string_view host,
                                        uint16_t port, std::string_view path);
// 403 ssrf_denied "{method} {host}:{port} blocked: {kind}".
std::string forward_ssrf_denied_response(std::string_view method, std::string_view host,
                                         uint16_t port, std::string_view kind);

// --- Upstream and proxy state -------------------------------------------------------------------
std::string upstream_unreachable_response(std::string_view host, uint16_t port);  // 502
// 502 upstream_tls_failed: the origin's certificate did not verify, or its handshake failed.
std::string upstream_tls_failed_response(std::string_view host, uint16_t port,
                                         std::string_view why);
std::string upstream_timeout_response(std::string_view host, uint16_t port);  // 504
std::string proxy_overloaded_response();                                      // 503

// --- inference.local (spec §5) ------------------------------------------------------------------
std::string inference_not_allowed_response();  // 403 {"error":"connection not allowed by policy"}

// --- Forward request rewrite (spec §2.10 step 8) ------------------------------------------------
enum class UpstreamConnection { kClose, kKeepAlive };

// Origin-form head for the upstream: request line `METHOD origin_target VERSION` (the client's
// version, so the origin never answers a 1.0 client in chunked coding); every Host replaced by
// uri.host_header() placed first; hop-by-hop fields (Connection, Keep-Alive, TE, Upgrade),
// fields nominated by Connection and every Proxy-* field dropped; `Via: <ver> openshell` added
// unless a Via exists; then `Connection: close` or `keep-alive`. Transfer-Encoding and Trailer
// stay: the body is relayed in its original framing. `origin_target` is the canonical path with
// the query (placeholders resolved); empty means uri.path.
std::string rewrite_forward_head(const RequestHead& head, const ProxyUri& uri,
                                 std::string_view origin_target, UpstreamConnection connection);

}  // namespace openshell::proxy
