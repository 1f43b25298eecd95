// Request-head parsing for the proxy: our own framing and strict checks (spec §2.7) around
// http-parser, which tokenises the header block; plus the CONNECT/absolute-form target parsers.
#include "openshell/proxy/http_head.hpp"

#include <arpa/inet.h>  // inet_pton only: validates IPv6 literals, no socket is involved
#include <http_parser.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <iterator>
#include <utility>

#include "openshell/policy/host_pattern.hpp"

namespace openshell::proxy {

std::string_view trim_ows(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

namespace {

struct Failure {
  HeadError error;
  std::string reason;
};
using Check = std::optional<Failure>;

Check failure(HeadError error, std::string reason) {
  return Failure{error, std::move(reason)};
}

bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// Never inside a request target: the request line is split on SP.
bool has_space_or_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// Control bytes are never valid in a field value; HTAB is whitespace.
bool is_value_ctl(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Calls fn(element) for each comma-separated element, trimmed (elements may be empty).
template <class Fn>
void for_each_list_element(std::string_view list, Fn&& fn) {
  while (true) {
    const size_t comma = list.find(',');
    fn(trim_ows(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

// RFC 3629 §4: the lead byte fixes the length and the range of the second byte, which is what
// excludes overlong forms, surrogates and code points above U+10FFFF.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    size_t length = 1;
    unsigned char low = 0x80;
    unsigned char high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      low = lead == 0xe0 ? 0xa0 : 0x80;
      high = lead == 0xed ? 0x9f : 0xbf;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      low = lead == 0xf0 ? 0x90 : 0x80;
      high = lead == 0xf4 ? 0x8f : 0xbf;
    } else if (lead >= 0x80) {
      return false;
    }
    if (s.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(s[i + k]);
      if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xbf)) return false;
    }
    i += length;
  }
  return true;
}

Check parse_request_line(std::string_view line, RequestHead& head) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    return failure(HeadError::kMalformedRequestLine,
                   "request line is not METHOD SP target SP version");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) {
    return failure(HeadError::kMalformedRequestLine, "request method is not a token");
  }
  if (target.empty()) return failure(HeadError::kMalformedRequestLine, "empty request target");
  // Bytes >= 0x80 pass here; the head is valid UTF-8 and canonicalisation judges the path.
  if (has_space_or_ctl(target)) {
    return failure(HeadError::kMalformedRequestLine,
                   "request target contains whitespace or a control byte");
  }
  if (version == "HTTP/1.1") {
    head.version = HttpVersion::kHttp11;
  } else if (version == "HTTP/1.0") {
    head.version = HttpVersion::kHttp10;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[6] == '.' &&
             version[5] >= '0' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9') {
    return failure(HeadError::kUnsupportedVersion, "only HTTP/1.0 and HTTP/1.1 are supported");
  } else {
    return failure(HeadError::kMalformedRequestLine, "malformed HTTP version in request line");
  }
  head.method = method;
  head.target = target;
  return std::nullopt;
}

// Shape of one field line; shared by the checks on http-parser's tokens and by the diagnosis of
// lines http-parser refused, so both paths give the same reason.
Check check_field(std::string_view name, std::string_view value) {
  if (name.empty()) return failure(HeadError::kMalformedHeader, "header field with an empty name");
  if (is_ows(name.back()) || is_ows(name.front())) {
    return failure(HeadError::kMalformedHeader, "whitespace around a header field name");
  }
  if (!is_token(name)) {
    return failure(HeadError::kMalformedHeader, "header field name is not a token");
  }
  if (std::any_of(value.begin(), value.end(), is_value_ctl)) {
    return failure(HeadError::kInvalidHeaderValue,
                   "control byte in value of header field " + std::string(name));
  }
  return std::nullopt;
}

// http-parser glue. The request line it sees is a fixed one: ours is parsed above because
// http-parser accepts repeated spaces and any HTTP/d.d, and knows only a fixed method list.
struct Tokenizer {
  std::vector<HeaderField>* fields = nullptr;
  bool new_line = false;
  std::optional<uint64_t> content_length;  // set when the head is complete
};

int on_header_field(http_parser* parser, const char* at, size_t length) {
  auto* t = static_cast<Tokenizer*>(parser->data);
  // Each header line is fed on its own, so a field callback after a line start is a new field.
  if (std::exchange(t->new_line, false)) t->fields->emplace_back();
  if (t->fields->empty()) return 1;
  t->fields->back().name.append(at, length);
  return 0;
}

int on_header_value(http_parser* parser, const char* at, size_t length) {
  auto* t = static_cast<Tokenizer*>(parser->data);
  if (t->fields->empty()) return 1;
  t->fields->back().value.append(at, length);
  return 0;
}

int on_headers_complete(http_parser* parser) {
  auto* t = static_cast<Tokenizer*>(parser->data);
  t->content_length = parser->content_length;
  return 2;  // no body, no further message: http-parser stops right after the head
}

const http_parser_settings& parser_settings() {
  static const http_parser_settings settings = [] {
    http_parser_settings s{};
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;
    return s;
  }();
  return settings;
}

// `lines` are views into a buffer where each is followed by CRLF.
Check tokenize_fields(const std::vector<std::string_view>& lines, RequestHead& head,
                      uint64_t& content_length) {
  http_parser parser{};
  http_parser_init(&parser, HTTP_REQUEST);
  Tokenizer tokenizer;
  tokenizer.fields = &head.headers;
  parser.data = &tokenizer;
  const auto run = [&parser](std::string_view bytes) {
    const size_t n = http_parser_execute(&parser, &parser_settings(), bytes.data(), bytes.size());
    return n == bytes.size() && HTTP_PARSER_ERRNO(&parser) == HPE_OK;
  };
  bool ok = run("GET / HTTP/1.1\r\n");
  for (size_t i = 0; ok && i < lines.size(); ++i) {
    tokenizer.new_line = true;
    ok = run(std::string_view(lines[i].data(), lines[i].size() + 2));
  }
  if (ok && run("\r\n") && tokenizer.content_length) {
    content_length = *tokenizer.content_length;
    return std::nullopt;
  }
  // http-parser said no: find the line and say why in our words.
  for (const std::string_view line : lines) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return failure(HeadError::kMalformedHeader, "header line without ':'");
    }
    if (Check c = check_field(line.substr(0, colon), trim_ows(line.substr(colon + 1)))) return c;
  }
  // An if-chain, not a switch: http_errno is a third-party enum we only partly care about.
  const http_errno code = HTTP_PARSER_ERRNO(&parser);
  if (code == HPE_INVALID_CONTENT_LENGTH) {
    return failure(HeadError::kInvalidContentLength, "Content-Length is not a decimal number");
  }
  if (code == HPE_UNEXPECTED_CONTENT_LENGTH) {  // identical duplicates never reach http-parser
    return failure(HeadError::kContentLengthAndTransferEncoding,
                   "both Content-Length and Transfer-Encoding present");
  }
  if (code == HPE_INVALID_TRANSFER_ENCODING) {
    return failure(HeadError::kInvalidTransferEncoding, "Transfer-Encoding must be chunked");
  }
  return failure(HeadError::kMalformedHeader, std::string("malformed header block (http-parser: ") +
                                                  http_errno_description(code) + ")");
}

// Rules on the whole field list, after tokenising.
Check check_fields(RequestHead& head, uint64_t parsed_content_length) {
  size_t hosts = 0;
  bool has_content_length = false;
  std::vector<std::string_view> transfer_encodings;
  for (HeaderField& field : head.headers) {
    field.value = std::string(trim_ows(field.value));  // http-parser keeps trailing OWS
    if (Check c = check_field(field.name, field.value)) return c;
    if (ascii_iequals(field.name, "host")) ++hosts;
    if (ascii_iequals(field.name, "content-length")) has_content_length = true;
    if (ascii_iequals(field.name, "transfer-encoding")) transfer_encodings.push_back(field.value);
  }
  if (hosts > 1) return failure(HeadError::kMultipleHost, "multiple Host header fields");
  if (hosts == 0 && head.version == HttpVersion::kHttp11) {
    return failure(HeadError::kMissingHost, "HTTP/1.1 request without Host");
  }
  if (has_content_length && !transfer_encodings.empty()) {
    return failure(HeadError::kContentLengthAndTransferEncoding,
                   "both Content-Length and Transfer-Encoding present");
  }
  if (has_content_length) {
    if (parsed_content_length > kMaxContentLength) {
      return failure(HeadError::kInvalidContentLength, "Content-Length is too large");
    }
    head.content_length = parsed_content_length;
  }
  if (!transfer_encodings.empty()) {
    // RFC 9112 §6.1: TE in an HTTP/1.0 message means the framing is faulty.
    if (head.version == HttpVersion::kHttp10) {
      return failure(HeadError::kInvalidTransferEncoding, "Transfer-Encoding in HTTP/1.0 request");
    }
    bool empty_element = false;
    for_each_list_element(transfer_encodings.front(), [&](std::string_view element) {
      empty_element = empty_element || element.empty();
    });
    if (empty_element) {
      return failure(HeadError::kInvalidTransferEncoding, "empty Transfer-Encoding element");
    }
    if (transfer_encodings.size() != 1 || !ascii_iequals(transfer_encodings.front(), "chunked")) {
      return failure(HeadError::kInvalidTransferEncoding,
                     "Transfer-Encoding must be exactly chunked");
    }
    head.chunked = true;
  }
  for (const char* framing : {"host", "content-length", "transfer-encoding"}) {
    if (head.connection_has(framing)) {
      return failure(HeadError::kConnectionNominatesFraming,
                     std::string("Connection nominates ") + framing);
    }
  }
  head.keep_alive = head.version == HttpVersion::kHttp11
                        ? !head.connection_has("close")
                        : head.connection_has("keep-alive") && !head.connection_has("close");
  return std::nullopt;
}

// `raw` is a complete head: CRLF line endings only, ending with an empty line.
Check parse_complete_head(std::string_view raw, RequestHead& head) {
  if (!valid_utf8(raw)) return failure(HeadError::kInvalidUtf8, "request head is not valid UTF-8");
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (true) {
    const size_t end = raw.find("\r\n", pos);
    if (end == pos || end == std::string_view::npos) break;
    lines.push_back(raw.substr(pos, end - pos));
    pos = end + 2;
  }
  if (lines.empty()) return failure(HeadError::kMalformedRequestLine, "empty request line");
  if (Check c = parse_request_line(lines.front(), head)) return c;

  // Before http-parser: it joins continuation lines silently, and refuses even identical
  // duplicate Content-Length fields, which the spec accepts (collapsed to one).
  std::vector<std::string_view> kept;
  std::optional<std::string_view> first_length;
  for (const std::string_view line : std::span(lines).subspan(1)) {
    if (is_ows(line.front())) {
      return failure(HeadError::kObsFold, "obsolete line folding in header block");
    }
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos && ascii_iequals(line.substr(0, colon), "content-length")) {
      const std::string_view value = trim_ows(line.substr(colon + 1));
      if (first_length && *first_length != value) {
        return failure(HeadError::kConflictingContentLength, "differing Content-Length values");
      }
      if (first_length) continue;
      first_length = value;
    }
    kept.push_back(line);
  }
  uint64_t content_length = 0;
  if (Check c = tokenize_fields(kept, head, content_length)) return c;
  return check_fields(head, content_length);
}

// Decimal port 1..65535 (at most five digits: no "00000443").
std::optional<uint16_t> parse_port(std::string_view text) {
  unsigned port = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, port);
  if (text.size() > 5 || error != std::errc() || stop != end || port == 0 || port > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(port);
}

// Names the resolver can look up: letters, digits, '-', '.', '_' (no percent-encoding).
bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

Error parse_error(std::string message) {
  return make_error(Errc::kParse, std::move(message));
}

Result<Authority> parse_host_port(std::string_view text, std::optional<uint16_t> default_port) {
  Authority out;
  std::string_view host;
  std::optional<std::string_view> port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return parse_error("unterminated IPv6 literal");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return parse_error("unexpected text after IPv6 literal");
      port_text = rest.substr(1);
    }
    std::array<unsigned char, 16> address{};
    // Only hex digits, ':' and '.' (IPv4 tail): a NUL would end the string inet_pton sees and
    // let "20b::\0junk" through as "20b::" (found by http_head_fuzz).
    const bool literal_chars =
        host.find_first_not_of("0123456789abcdefABCDEF:.") == std::string_view::npos;
    if (host.empty() || host.size() > 45 || !literal_chars ||
        inet_pton(AF_INET6, std::string(host).c_str(), address.data()) != 1) {
      return parse_error("invalid IPv6 literal");
    }
    out.ipv6 = true;
  } else {
    const size_t colon = text.rfind(':');
    host = text.substr(0, colon);
    if (colon != std::string_view::npos) port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return parse_error("IPv6 address must be enclosed in brackets");
    }
    if (host.empty()) return parse_error("empty host");
    if (!std::all_of(host.begin(), host.end(), is_host_char)) {
      return parse_error("invalid character in host");
    }
  }
  if (port_text) {
    const std::optional<uint16_t> port = parse_port(*port_text);
    if (!port) return parse_error("port must be a number from 1 to 65535");
    out.port = *port;
    out.explicit_port = true;
  } else if (default_port) {
    out.port = *default_port;
  } else {
    return parse_error("missing port");
  }
  out.host = policy::ascii_lowercase(host);
  return out;
}

uint16_t default_port_for(std::string_view scheme) {
  return static_cast<uint16_t>(scheme == "http" ? 80 : scheme == "https" ? 443 : 0);
}

}  // namespace

int head_error_status(HeadError error) {
  return error == HeadError::kHeadTooLarge ? 431 : 400;
}

std::string_view head_error_name(HeadError error) {
  // In enum order; the static_assert catches an enumerator added without a name.
  static constexpr std::string_view kNames[] = {"head_too_large",
                                                "bad_line_ending",
                                                "invalid_utf8",
                                                "malformed_request_line",
                                                "unsupported_version",
                                                "missing_host",
                                                "multiple_host",
                                                "obs_fold",
                                                "malformed_header",
                                                "invalid_header_value",
                                                "invalid_content_length",
                                                "conflicting_content_length",
                                                "content_length_and_transfer_encoding",
                                                "invalid_transfer_encoding",
                                                "connection_nominates_framing"};
  static_assert(std::size(kNames) ==
                static_cast<size_t>(HeadError::kConnectionNominatesFraming) + 1);
  const auto index = static_cast<size_t>(error);
  return index < std::size(kNames) ? kNames[index] : "unknown";
}

std::string_view http_version_text(HttpVersion version) {
  return version == HttpVersion::kHttp10 ? "HTTP/1.0" : "HTTP/1.1";
}

bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

const HeaderField* RequestHead::find(std::string_view name) const {
  for (const HeaderField& field : headers) {
    if (ascii_iequals(field.name, name)) return &field;
  }
  return nullptr;
}

std::optional<std::string_view> RequestHead::host() const {
  if (const HeaderField* field = find("host")) return std::string_view(field->value);
  return std::nullopt;
}

bool RequestHead::connection_has(std::string_view token) const {
  bool found = false;
  for (const HeaderField& field : headers) {
    if (!ascii_iequals(field.name, "connection")) continue;
    for_each_list_element(field.value, [&](std::string_view element) {
      found = found || ascii_iequals(element, token);
    });
  }
  return found;
}

RequestHeadParser::RequestHeadParser(size_t head_limit) : limit_(head_limit) {}

void RequestHeadParser::reset() {
  raw_.clear();
  prev_cr_ = false;
  line_length_ = 0;
  status_ = Status::kNeedMore;
  head_ = RequestHead{};
  reason_.clear();
}

RequestHeadParser::Progress RequestHeadParser::fail(HeadError error, std::string reason,
                                                    size_t consumed) {
  status_ = Status::kError;
  error_ = error;
  reason_ = std::move(reason);
  return {status_, consumed};
}

RequestHeadParser::Progress RequestHeadParser::feed(std::span<const char> bytes) {
  if (status_ != Status::kNeedMore) return {status_, 0};
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (prev_cr_ && c != '\n') {
      return fail(HeadError::kBadLineEnding, "CR not followed by LF in request head", i + 1);
    }
    if (c == '\n') {
      if (!prev_cr_) return fail(HeadError::kBadLineEnding, "bare LF in request head", i + 1);
      prev_cr_ = false;
      if (line_length_ == 0) {  // the empty line: end of head
        raw_.append(bytes.data(), i + 1);
        head_.head_size = raw_.size();
        if (Check c2 = parse_complete_head(raw_, head_)) {
          return fail(c2->error, std::move(c2->reason), i + 1);
        }
        status_ = Status::kComplete;
        return {status_, i + 1};
      }
      line_length_ = 0;
    } else if (c == '\r') {
      prev_cr_ = true;
    } else {
      ++line_length_;
    }
    // A head of exactly the limit is accepted; one more byte without the end cannot be.
    if (raw_.size() + i + 1 >= limit_) {
      return fail(HeadError::kHeadTooLarge,
                  "HTTP request headers exceed " + std::to_string(limit_) + " bytes", i + 1);
    }
  }
  raw_.append(bytes.data(), bytes.size());
  return {status_, bytes.size()};
}

std::string serialize_request_head(const RequestHead& head) {
  std::string out;
  out.reserve(head.head_size + 64);
  out.append(head.method).append(" ").append(head.target).append(" ");
  out.append(http_version_text(head.version)).append("\r\n");
  for (const HeaderField& field : head.headers) {
    out.append(field.name).append(": ").append(field.value).append("\r\n");
  }
  out.append("\r\n");
  return out;
}

std::string format_authority(std::string_view host, uint16_t port, bool ipv6, bool include_port) {
  std::string out = ipv6 ? "[" + std::string(host) + "]" : std::string(host);
  if (include_port) out += ":" + std::to_string(port);
  return out;
}

Result<Authority> parse_connect_target(std::string_view target) {
  return parse_host_port(target, std::nullopt);
}

Result<Authority> parse_host_header(std::string_view value, uint16_t default_port) {
  return parse_host_port(trim_ows(value), default_port);
}

std::string ProxyUri::host_header() const {
  const bool include_port = port != 0 && port != default_port_for(scheme);
  return format_authority(host, port, ipv6, include_port);
}

Result<ProxyUri> parse_proxy_uri(std::string_view uri) {
  if (has_space_or_ctl(uri)) return parse_error("whitespace or control byte in request URI");
  if (uri.find('#') != std::string_view::npos) return parse_error("fragment in request URI");
  const size_t separator = uri.find("://");
  if (separator == std::string_view::npos || separator == 0) {
    return parse_error("request URI has no scheme");
  }
  const std::string_view scheme = uri.substr(0, separator);
  for (size_t i = 0; i < scheme.size(); ++i) {
    const char c = scheme[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool other = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    if (!alpha && (i == 0 || !other)) return parse_error("invalid URI scheme");
  }
  const std::string_view rest = uri.substr(separator + 3);
  const size_t authority_end = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return parse_error("userinfo in request URI is not allowed");
  }
  if (authority.empty()) return parse_error("empty host in request URI");

  ProxyUri out;
  out.scheme = policy::ascii_lowercase(scheme);
  Result<Authority> parsed = parse_host_port(authority, default_port_for(out.scheme));
  if (!parsed) return parsed.error();
  out.host = std::move(parsed->host);
  out.port = parsed->port;
  out.ipv6 = parsed->ipv6;
  out.explicit_port = parsed->explicit_port;
  const std::string_view tail =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (tail.empty() || tail.front() == '?') out.path = "/";  // "?q" right after authority: "/?q"
  out.path += tail;
  return out;
}

namespace {
std::string_view without_trailing_dot(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}
}  // namespace

bool request_authority_matches(const RequestHead& head, std::string_view host, uint16_t port,
                               uint16_t default_port) {
  // Hosts arrive lowercased from both parsers.
  const auto same = [&](std::string_view other_host, uint16_t other_port) {
    return without_trailing_dot(other_host) == without_trailing_dot(host) && other_port == port;
  };
  if (!head.target.starts_with('/') && head.target != "*") {
    const auto uri = parse_proxy_uri(head.target);
    if (!uri.ok() || !same(uri->host, uri->port)) return false;
  }
  const auto value = head.host();
  if (!value) return true;
  const auto authority = parse_host_header(*value, default_port);
  return authority.ok() && same(authority->host, authority->port);
}

}  // namespace openshell::proxy
