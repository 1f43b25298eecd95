// Parsing an upstream's HTTP/1.x response head: enough to frame the body (so keep-alive client
// connections know where a response ends) and to rewrite hop-by-hop headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/proxy/http_head.hpp"

namespace openshell::proxy {

// Upstream response heads larger than this are refused (502): no sane origin sends them.
inline constexpr size_t kMaxResponseHeadBytes = 64 * 1024;

struct ResponseHead {
  int status = 0;
  HttpVersion version = HttpVersion::kHttp11;
  std::string reason;
  std::vector<HeaderField> headers;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool close = false;  // the upstream will close after this response
  size_t head_size = 0;
  const HeaderField* find(std::string_view name) const;
};

enum class ResponseParse { kNeedMore, kComplete, kError };

struct ResponseHeadResult {
  ResponseParse status = ResponseParse::kNeedMore;
  ResponseHead head;
  std::string error;  // for kError
};

// Parses the head at the start of `bytes` (which may hold body bytes after it).
ResponseHeadResult parse_response_head(std::string_view bytes);

// How the body that follows a response head is delimited (RFC 9112 §6.3).
enum class BodyFraming { kNone, kLength, kChunked, kUntilClose };
BodyFraming response_body_framing(const ResponseHead& head, std::string_view request_method);

// The head re-serialised for the client: hop-by-hop headers dropped, then `Connection: close`
// or keep-alive as chosen.
std::string rewrite_response_head(const ResponseHead& head, bool keep_alive,
                                  HttpVersion client_version);

}  // namespace openshell::proxy
