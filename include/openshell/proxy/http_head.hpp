// Sans-I/O parsing of one HTTP/1.1 request head (spec §2.7, §2.8 step 1) and of the request
// targets the proxy acts on (CONNECT authority, absolute-form URI of §2.10 step 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::proxy {

// `s` without the optional whitespace (spaces and tabs, RFC 9110 §5.6.3) around it.
std::string_view trim_ows(std::string_view s);

// Head limits (spec §8). The proxy's own CONNECT/forward request is small by nature and an
// oversized one is answered with 431; requests inside a tunnel carry real client headers
// (cookies, tokens) and get the larger bound, beyond which the tunnel is closed.
inline constexpr size_t kProxyRequestHeadLimit = 8192;
inline constexpr size_t kTunnelRequestHeadLimit = 16384;

// Largest Content-Length accepted: keeps body arithmetic inside int64 for every consumer.
inline constexpr uint64_t kMaxContentLength = 0x7fff'ffff'ffff'ffffULL;

enum class HeadError {
  kHeadTooLarge,   // 431 on the proxy's own requests
  kBadLineEnding,  // bare LF, or CR not followed by LF
  kInvalidUtf8,
  kMalformedRequestLine,  // not exactly METHOD SP target SP HTTP/x.y
  kUnsupportedVersion,    // HTTP/x.y other than 1.0 and 1.1
  kMissingHost,           // HTTP/1.1 without Host
  kMultipleHost,
  kObsFold,                   // continuation line
  kMalformedHeader,           // missing ':', whitespace before ':', non-token name
  kInvalidHeaderValue,        // control byte other than HTAB
  kInvalidContentLength,      // non-numeric or too large
  kConflictingContentLength,  // differing duplicates
  kContentLengthAndTransferEncoding,
  kInvalidTransferEncoding,     // anything but exactly `chunked`, empty element, TE in HTTP/1.0
  kConnectionNominatesFraming,  // Connection names host, content-length or transfer-encoding
};

// 431 for kHeadTooLarge, 400 for everything else.
int head_error_status(HeadError error);
std::string_view head_error_name(HeadError error);

enum class HttpVersion { kHttp10, kHttp11 };
std::string_view http_version_text(HttpVersion version);  // "HTTP/1.0" / "HTTP/1.1"

struct HeaderField {
  std::string name;   // as sent (original case)
  std::string value;  // leading and trailing SP/HTAB removed
};

struct RequestHead {
  std::string method;  // case-sensitive token as sent
  std::string target;  // raw request-target
  HttpVersion version = HttpVersion::kHttp11;
  // Wire order, original case. Identical duplicate Content-Length fields are collapsed to one.
  std::vector<HeaderField> headers;
  std::optional<uint64_t> content_length;
  bool chunked = false;    // Transfer-Encoding: chunked (the only coding accepted)
  bool keep_alive = true;  // HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with keep-alive
  size_t head_size = 0;    // bytes on the wire, including the blank line

  // First field with this name (ASCII case-insensitive), or nullptr.
  const HeaderField* find(std::string_view name) const;
  // Value of the (single) Host field, if present.
  std::optional<std::string_view> host() const;
  // Whether `Connection` lists `token` (case-insensitive).
  bool connection_has(std::string_view token) const;
  bool is_connect() const { return method == "CONNECT"; }
  bool has_body() const { return chunked || content_length.value_or(0) > 0; }
};

// Incremental parser: feed bytes as they arrive. The head ends at the first empty line; bytes
// after it are not consumed and belong to the body or to the next request.
class RequestHeadParser {
 public:
  enum class Status { kNeedMore, kComplete, kError };
  struct Progress {
    Status status = Status::kNeedMore;
    size_t consumed = 0;  // bytes of this call's input that belong to the head
  };

  explicit RequestHeadParser(size_t head_limit = kTunnelRequestHeadLimit);

  // After kComplete or kError further calls return the same status and consume nothing.
  Progress feed(std::span<const char> bytes);
  Progress feed(std::string_view bytes) { return feed(std::span<const char>(bytes)); }

  Status status() const { return status_; }
  // Valid after kComplete.
  const RequestHead& head() const { return head_; }
  RequestHead& head() { return head_; }
  // Valid after kError.
  HeadError error() const { return error_; }
  const std::string& reason() const { return reason_; }
  // Bytes of an unfinished head held so far (0: the client has sent nothing of this request).
  size_t buffered() const { return raw_.size(); }

  // Ready for the next request on the same connection.
  void reset();

 private:
  Progress fail(HeadError error, std::string reason, size_t consumed);

  size_t limit_;
  std::string raw_;
  bool prev_cr_ = false;
  size_t line_length_ = 0;
  Status status_ = Status::kNeedMore;
  RequestHead head_;
  HeadError error_ = HeadError::kMalformedRequestLine;
  std::string reason_;
};

// The request head back in wire form (request line, fields in order, blank line).
std::string serialize_request_head(const RequestHead& head);

// host[:port] as the proxy uses it: host lowercased, IPv6 without its brackets.
struct Authority {
  std::string host;
  uint16_t port = 0;
  bool ipv6 = false;           // host was a bracketed IPv6 literal
  bool explicit_port = false;  // port was written, not defaulted
};

// "host" or "[v6]" plus ":port" when include_port.
std::string format_authority(std::string_view host, uint16_t port, bool ipv6, bool include_port);

// CONNECT target: `host:port` or `[v6]:port`, port 1..65535 (spec §2.8 step 3).
Result<Authority> parse_connect_target(std::string_view target);

// Host header value: `host[:port]` or `[v6][:port]`; default_port fills a missing port.
Result<Authority> parse_host_header(std::string_view value, uint16_t default_port);

// Absolute-form request target of a forward-proxy request (spec §2.10 step 1).
struct ProxyUri {
  std::string scheme;  // lowercased
  std::string host;    // lowercased, IPv6 without brackets
  uint16_t port = 0;   // explicit, or 80/443 for http/https; 0 for another scheme without one
  bool ipv6 = false;
  bool explicit_port = false;
  std::string path;  // origin-form: "/" when absent, "/?q" for a query right after authority

  // Host header for the origin: port omitted when it is the scheme's default.
  std::string host_header() const;
};

Result<ProxyUri> parse_proxy_uri(std::string_view uri);

// Spec §2.5 step 9: whether a request inside a tunnel names the host and port the tunnel was
// admitted for (case-insensitive, trailing dot ignored), by its Host header and, in absolute
// form, its target. `default_port`: 443 inside TLS, 80 in plaintext. No Host (HTTP/1.0) passes.
bool request_authority_matches(const RequestHead& head, std::string_view host, uint16_t port,
                               uint16_t default_port);

// Case-insensitive ASCII comparison, used for field names and tokens.
bool ascii_iequals(std::string_view a, std::string_view b);

}  // namespace openshell::proxy
