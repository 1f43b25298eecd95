// Upstream response heads: lenient on line endings (origins differ), strict where framing is at
// stake (conflicting Content-Length, unknown transfer codings).
#include "openshell/proxy/response_head.hpp"

#include <charconv>

#include "openshell/proxy/http_head.hpp"

namespace openshell::proxy {

namespace {

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy.
bool is_hop_by_hop(std::string_view name) {
  for (std::string_view hop : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                               "transfer-encoding", "upgrade", "proxy-authenticate"}) {
    if (ascii_iequals(name, hop)) return true;
  }
  return false;
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (ascii_iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

ResponseHeadResult fail(std::string message) {
  ResponseHeadResult result;
  result.status = ResponseParse::kError;
  result.error = std::move(message);
  return result;
}

}  // namespace

const HeaderField* ResponseHead::find(std::string_view name) const {
  for (const HeaderField& field : headers) {
    if (ascii_iequals(field.name, name)) return &field;
  }
  return nullptr;
}

ResponseHeadResult parse_response_head(std::string_view bytes) {
  size_t end = bytes.find("\r\n\r\n");
  size_t terminator = 4;
  if (const size_t lf = bytes.find("\n\n"); lf != std::string_view::npos && lf < end) {
    end = lf;
    terminator = 2;
  }
  if (end == std::string_view::npos) {
    if (bytes.size() > kMaxResponseHeadBytes) return fail("upstream response head too large");
    return {};
  }
  if (end + terminator > kMaxResponseHeadBytes) return fail("upstream response head too large");

  ResponseHeadResult result;
  ResponseHead& head = result.head;
  head.head_size = end + terminator;
  std::string_view text = bytes.substr(0, end);
  bool first = true;
  std::vector<uint64_t> lengths;
  while (!text.empty() || first) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (first) {
      first = false;
      // HTTP/1.x SP 3DIGIT [SP reason]
      if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." ||
          (line[7] != '0' && line[7] != '1') || line[8] != ' ') {
        return fail("malformed upstream status line");
      }
      head.version = line[7] == '0' ? HttpVersion::kHttp10 : HttpVersion::kHttp11;
      const auto [ptr, ec] = std::from_chars(line.data() + 9, line.data() + 12, head.status);
      if (ec != std::errc() || ptr != line.data() + 12 || head.status < 100 || head.status > 999) {
        return fail("malformed upstream status code");
      }
      head.reason = std::string(trim_ows(line.substr(12)));
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return fail("malformed upstream header");
    const std::string_view name = line.substr(0, colon);
    for (char c : name) {
      if (!is_token_char(c)) return fail("malformed upstream header name");
    }
    const std::string_view value = trim_ows(line.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return fail("control byte in upstream header value");
      }
    }
    if (ascii_iequals(name, "content-length")) {
      uint64_t length = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (value.empty() || ec != std::errc() || ptr != value.data() + value.size() ||
          length > kMaxContentLength) {
        return fail("invalid upstream Content-Length");
      }
      lengths.push_back(length);
    } else if (ascii_iequals(name, "transfer-encoding")) {
      // Only chunked (last) frames a response we can relay message by message.
      if (!value.empty()) {
        const size_t last_comma = value.rfind(',');
        const std::string_view last =
            trim_ows(last_comma == std::string_view::npos ? value : value.substr(last_comma + 1));
        head.chunked = ascii_iequals(last, "chunked");
        if (!head.chunked) head.close = true;  // delimited by close
      }
    } else if (ascii_iequals(name, "connection")) {
      if (has_token(value, "close")) head.close = true;
    }
    head.headers.push_back(HeaderField{std::string(name), std::string(value)});
  }
  for (uint64_t length : lengths) {
    if (length != lengths.front()) return fail("conflicting upstream Content-Length");
  }
  // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); the length is then dropped.
  if (!lengths.empty() && !head.chunked) head.content_length = lengths.front();
  if (head.version == HttpVersion::kHttp10) {
    const HeaderField* connection = head.find("connection");
    if (connection == nullptr || !has_token(connection->value, "keep-alive")) head.close = true;
  }
  result.status = ResponseParse::kComplete;
  return result;
}

BodyFraming response_body_framing(const ResponseHead& head, std::string_view request_method) {
  if (request_method == "HEAD" || (head.status >= 100 && head.status < 200) || head.status == 204 ||
      head.status == 304) {
    return BodyFraming::kNone;
  }
  if (head.chunked) return BodyFraming::kChunked;
  if (head.content_length) {
    return *head.content_length == 0 ? BodyFraming::kNone : BodyFraming::kLength;
  }
  return BodyFraming::kUntilClose;
}

std::string rewrite_response_head(const ResponseHead& head, bool keep_alive,
                                  HttpVersion client_version) {
  std::string out;
  out.reserve(head.head_size + 64);
  out += http_version_text(client_version == HttpVersion::kHttp10 ? HttpVersion::kHttp10
                                                                  : HttpVersion::kHttp11);
  out += ' ';
  out += std::to_string(head.status);
  out += ' ';
  out += head.reason;
  out += "\r\n";
  const HeaderField* connection = head.find("connection");
  for (const HeaderField& field : head.headers) {
    const bool framing = ascii_iequals(field.name, "transfer-encoding");
    // A close-delimited body keeps its (non-chunked) codings; a chunked one is re-declared below,
    // and never next to a Content-Length.
    if (framing && !head.chunked) {
      // kept: the codings describe the body the client receives
    } else if (is_hop_by_hop(field.name) ||
               (head.chunked && ascii_iequals(field.name, "content-length"))) {
      continue;
    }
    // Headers the upstream nominated as hop-by-hop in Connection go too.
    if (connection != nullptr && has_token(connection->value, field.name)) continue;
    out += field.name;
    out += ": ";
    out += field.value;
    out += "\r\n";
  }
  if (head.chunked) out += "Transfer-Encoding: chunked\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  return out;
}

}  // namespace openshell::proxy
