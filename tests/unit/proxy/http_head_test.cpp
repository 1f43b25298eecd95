// Request-head parser and request-target parsers: every strictness rule of spec §2.7 (accept and
// reject), incremental feeding, limits, and the §11 parse_proxy_uri vectors.
#include "openshell/proxy/http_head.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>

using openshell::proxy::HeadError;
using openshell::proxy::HttpVersion;
using openshell::proxy::kProxyRequestHeadLimit;
using openshell::proxy::kTunnelRequestHeadLimit;
using openshell::proxy::RequestHead;
using openshell::proxy::RequestHeadParser;
using Status = RequestHeadParser::Status;

namespace {

struct Outcome {
  Status status = Status::kNeedMore;
  size_t consumed = 0;
  RequestHead head;
  HeadError error = HeadError::kMalformedRequestLine;
  std::string reason;
};

Outcome collect(RequestHeadParser& parser, size_t consumed) {
  Outcome out;
  out.status = parser.status();
  out.consumed = consumed;
  if (out.status == Status::kComplete) out.head = parser.head();
  if (out.status == Status::kError) {
    out.error = parser.error();
    out.reason = parser.reason();
  }
  return out;
}

Outcome parse_all(std::string_view input, size_t limit = kTunnelRequestHeadLimit) {
  RequestHeadParser parser(limit);
  const auto progress = parser.feed(input);
  return collect(parser, progress.consumed);
}

Outcome parse_bytewise(std::string_view input, size_t limit = kTunnelRequestHeadLimit) {
  RequestHeadParser parser(limit);
  size_t consumed = 0;
  for (size_t i = 0; i < input.size() && parser.status() == Status::kNeedMore; ++i) {
    consumed += parser.feed(input.substr(i, 1)).consumed;
  }
  return collect(parser, consumed);
}

void require_same(const Outcome& a, const Outcome& b) {
  REQUIRE(a.status == b.status);
  REQUIRE(a.consumed == b.consumed);
  REQUIRE(a.reason == b.reason);
  if (a.status == Status::kError) REQUIRE(a.error == b.error);
  if (a.status == Status::kComplete) {
    REQUIRE(a.head.method == b.head.method);
    REQUIRE(a.head.target == b.head.target);
    REQUIRE(a.head.headers.size() == b.head.headers.size());
    for (size_t i = 0; i < a.head.headers.size(); ++i) {
      REQUIRE(a.head.headers[i].name == b.head.headers[i].name);
      REQUIRE(a.head.headers[i].value == b.head.headers[i].value);
    }
    REQUIRE(a.head.content_length == b.head.content_length);
    REQUIRE(a.head.chunked == b.head.chunked);
    REQUIRE(a.head.keep_alive == b.head.keep_alive);
    REQUIRE(a.head.head_size == b.head.head_size);
  }
}

// Parses `input` one-shot and byte by byte; both must agree.
Outcome parse(std::string_view input, size_t limit = kTunnelRequestHeadLimit) {
  Outcome all = parse_all(input, limit);
  require_same(all, parse_bytewise(input, limit));
  return all;
}

RequestHead accept(std::string_view input) {
  Outcome out = parse(input);
  INFO("input: " << input << " reason: " << out.reason);
  REQUIRE(out.status == Status::kComplete);
  REQUIRE(out.consumed == out.head.head_size);
  return out.head;
}

HeadError reject(std::string_view input) {
  Outcome out = parse(input);
  INFO("input: " << input);
  REQUIRE(out.status == Status::kError);
  REQUIRE_FALSE(out.reason.empty());
  return out.error;
}

std::string get_with(std::string_view fields) {
  return "GET / HTTP/1.1\r\nHost: example.com\r\n" + std::string(fields) + "\r\n";
}

}  // namespace

TEST_CASE("a simple request head parses", "[http_head]") {
  const std::string input =
      "GET /path?q=1 HTTP/1.1\r\nHost: Example.com\r\nX-Mixed-Case:  v a l \r\n"
      "accept: */*\r\n\r\nBODY";
  Outcome out = parse(input);
  REQUIRE(out.status == Status::kComplete);
  REQUIRE(out.consumed == input.size() - 4);  // the body is left to the caller
  const RequestHead& head = out.head;
  CHECK(head.method == "GET");
  CHECK(head.target == "/path?q=1");
  CHECK(head.version == HttpVersion::kHttp11);
  REQUIRE(head.headers.size() == 3);
  CHECK(head.headers[1].name == "X-Mixed-Case");
  CHECK(head.headers[1].value == "v a l");  // OWS trimmed, inner spaces kept
  CHECK(head.headers[2].name == "accept");
  REQUIRE(head.find("ACCEPT") != nullptr);
  CHECK(head.find("ACCEPT")->value == "*/*");
  CHECK(head.find("missing") == nullptr);
  CHECK(head.host() == "Example.com");
  CHECK(head.keep_alive);
  CHECK_FALSE(head.content_length);
  CHECK_FALSE(head.chunked);
  CHECK_FALSE(head.has_body());
  CHECK_FALSE(head.is_connect());
}

TEST_CASE("CONNECT and extension methods", "[http_head]") {
  CHECK(accept("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").is_connect());
  // Any token is a method, including ones http-parser does not know.
  CHECK(accept("QUERY /x HTTP/1.1\r\nHost: a\r\n\r\n").method == "QUERY");
  CHECK(accept("get / HTTP/1.1\r\nHost: a\r\n\r\n").method == "get");
  CHECK(accept("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target == "*");
  CHECK(accept("GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n").target ==
        "http://a.example/x?y");
}

TEST_CASE("keep-alive semantics", "[http_head]") {
  CHECK(accept("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
  CHECK_FALSE(accept("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
  CHECK_FALSE(accept("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n").keep_alive);
  CHECK_FALSE(accept("GET / HTTP/1.0\r\n\r\n").keep_alive);
  const RequestHead ka = accept("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  CHECK(ka.keep_alive);
  CHECK(ka.version == HttpVersion::kHttp10);
  CHECK(ka.connection_has("keep-alive"));
  CHECK_FALSE(ka.connection_has("close"));
}

TEST_CASE("line endings: bare LF and stray CR are rejected", "[http_head]") {
  CHECK(reject("GET / HTTP/1.1\nHost: a\r\n\r\n") == HeadError::kBadLineEnding);
  CHECK(reject("GET / HTTP/1.1\r\nHost: a\n\r\n") == HeadError::kBadLineEnding);
  CHECK(reject("GET / HTTP/1.1\r\nHost: a\r\n\n") == HeadError::kBadLineEnding);
  CHECK(reject("GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n") == HeadError::kBadLineEnding);
  CHECK(reject("GET / HTTP/1.1\r\r\n") == HeadError::kBadLineEnding);
  // Rejected as soon as seen, without waiting for the end of the head.
  RequestHeadParser parser;
  CHECK(parser.feed(std::string_view("GET / HTTP/1.1\n")).status == Status::kError);
}

TEST_CASE("UTF-8 is validated over the whole head", "[http_head]") {
  CHECK(accept(get_with("X-Name: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\r\n"))
            .find("x-name")
            ->value == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(reject(get_with("X: \xc3\x28\r\n")) == HeadError::kInvalidUtf8);
  CHECK(reject(get_with("X: \xc0\xaf\r\n")) == HeadError::kInvalidUtf8);          // overlong
  CHECK(reject(get_with("X: \xed\xa0\x80\r\n")) == HeadError::kInvalidUtf8);      // surrogate
  CHECK(reject(get_with("X: \xf4\x90\x80\x80\r\n")) == HeadError::kInvalidUtf8);  // > U+10FFFF
  CHECK(reject(get_with("X: \xe2\x82\r\n")) == HeadError::kInvalidUtf8);          // truncated
  CHECK(reject("GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n") == HeadError::kInvalidUtf8);
  CHECK(accept("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n").target == "/caf\xc3\xa9");
}

TEST_CASE("request line must be exactly METHOD SP target SP version", "[http_head]") {
  for (const char* line : {
           "GET  / HTTP/1.1",
           "GET /  HTTP/1.1",
           " GET / HTTP/1.1",
           "GET / HTTP/1.1 ",
           "GET\t/ HTTP/1.1",
           "GET /\tHTTP/1.1",
           "GET /",
           "GET / ",
           "GET",
           "/ HTTP/1.1",
           "G@T / HTTP/1.1",
           "GET /a\x01 HTTP/1.1",
           "GET /a\x7f HTTP/1.1",
           "GET / http/1.1",
           "GET / HTTP/1.1x",
           "GET / HTTP/11",
           "GET / HTTPS/1.1",
           "GET /a b HTTP/1.1",
           "",
       }) {
    INFO("request line: " << line);
    CHECK(reject(std::string(line) + "\r\nHost: a\r\n\r\n") == HeadError::kMalformedRequestLine);
  }
}

TEST_CASE("only HTTP/1.0 and HTTP/1.1", "[http_head]") {
  for (const char* version : {"HTTP/0.9", "HTTP/1.2", "HTTP/2.0", "HTTP/3.0", "HTTP/9.9"}) {
    INFO(version);
    CHECK(reject("GET / " + std::string(version) + "\r\nHost: a\r\n\r\n") ==
          HeadError::kUnsupportedVersion);
  }
}

TEST_CASE("Host: required for HTTP/1.1, at most one", "[http_head]") {
  CHECK(reject("GET / HTTP/1.1\r\n\r\n") == HeadError::kMissingHost);
  CHECK(reject("CONNECT a:443 HTTP/1.1\r\n\r\n") == HeadError::kMissingHost);
  CHECK(accept("GET / HTTP/1.0\r\n\r\n").host() == std::nullopt);
  CHECK(reject("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == HeadError::kMultipleHost);
  CHECK(reject("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == HeadError::kMultipleHost);
  CHECK(reject("GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n") == HeadError::kMultipleHost);
}

TEST_CASE("Content-Length rules", "[http_head]") {
  const RequestHead head = accept(get_with("Content-Length: 42\r\n"));
  CHECK(head.content_length == 42u);
  CHECK(head.has_body());
  CHECK(accept(get_with("Content-Length: 0\r\n")).content_length == 0u);
  CHECK_FALSE(accept(get_with("Content-Length: 0\r\n")).has_body());
  CHECK(accept(get_with("Content-Length: 007\r\n")).content_length == 7u);
  CHECK(accept(get_with("Content-Length: 9223372036854775807\r\n")).content_length ==
        9223372036854775807ULL);

  // Identical duplicates collapse to one field; differing ones are refused.
  const RequestHead dup = accept(get_with("Content-Length: 5\r\nX: y\r\ncontent-length:  5 \r\n"));
  CHECK(dup.content_length == 5u);
  REQUIRE(dup.headers.size() == 3);
  CHECK(dup.headers[1].name == "Content-Length");
  CHECK(dup.headers[2].name == "X");
  CHECK(reject(get_with("Content-Length: 5\r\nContent-Length: 6\r\n")) ==
        HeadError::kConflictingContentLength);
  CHECK(reject(get_with("Content-Length: 5\r\nContent-Length: 05\r\n")) ==
        HeadError::kConflictingContentLength);

  for (const char* bad :
       {"abc", "-1", "+5", "1 2", "5,5", "0x10", "", "1.0", "99999999999999999999999",
        "18446744073709551615", "9223372036854775808"}) {
    INFO("Content-Length: " << bad);
    CHECK(reject(get_with("Content-Length: " + std::string(bad) + "\r\n")) ==
          HeadError::kInvalidContentLength);
  }
}

TEST_CASE("Transfer-Encoding rules", "[http_head]") {
  const RequestHead head = accept(get_with("Transfer-Encoding: chunked\r\n"));
  CHECK(head.chunked);
  CHECK(head.has_body());
  CHECK_FALSE(head.content_length);
  CHECK(accept(get_with("Transfer-Encoding: Chunked\r\n")).chunked);
  CHECK(reject(get_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")) ==
        HeadError::kContentLengthAndTransferEncoding);
  CHECK(reject(get_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")) ==
        HeadError::kContentLengthAndTransferEncoding);
  CHECK(reject(get_with("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n")) ==
        HeadError::kContentLengthAndTransferEncoding);
  for (const char* bad : {"gzip", "gzip, chunked", "chunked, gzip", "chunked, chunked", "identity",
                          "chunked;q=1", "xchunked"}) {
    INFO("Transfer-Encoding: " << bad);
    CHECK(reject(get_with("Transfer-Encoding: " + std::string(bad) + "\r\n")) ==
          HeadError::kInvalidTransferEncoding);
  }
  for (const char* empty : {"", "chunked,", ", chunked", "chunked, ,", " , "}) {
    INFO("Transfer-Encoding: " << empty);
    Outcome out = parse(get_with("Transfer-Encoding: " + std::string(empty) + "\r\n"));
    REQUIRE(out.status == Status::kError);
    CHECK(out.error == HeadError::kInvalidTransferEncoding);
    CHECK(out.reason == "empty Transfer-Encoding element");
  }
  CHECK(reject(get_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")) ==
        HeadError::kInvalidTransferEncoding);
  CHECK(reject("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        HeadError::kInvalidTransferEncoding);
}

TEST_CASE("obs-fold continuation lines are rejected", "[http_head]") {
  CHECK(reject(get_with("X: a\r\n b\r\n")) == HeadError::kObsFold);
  CHECK(reject(get_with("X: a\r\n\tb\r\n")) == HeadError::kObsFold);
  CHECK(reject("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == HeadError::kObsFold);
}

TEST_CASE("field-line shape", "[http_head]") {
  CHECK(reject(get_with("NoColon\r\n")) == HeadError::kMalformedHeader);
  CHECK(reject(get_with("X : a\r\n")) == HeadError::kMalformedHeader);
  CHECK(reject(get_with("X\t: a\r\n")) == HeadError::kMalformedHeader);
  CHECK(reject(get_with(": a\r\n")) == HeadError::kMalformedHeader);
  for (const char* name :
       {"X@Y", "X(Y)", "X/Y", "X\"Y", "X,Y", "X;Y", "X=Y", "X{Y}", "X\xc3\xa9", "X[Y]", "X\\Y"}) {
    INFO("field name: " << name);
    CHECK(reject(get_with(std::string(name) + ": a\r\n")) == HeadError::kMalformedHeader);
  }
  const RequestHead ok = accept(get_with("X!#$%&'*+-.^_`|~09az: v\r\nEmpty:\r\nE2: \t \r\n"));
  CHECK(ok.find("x!#$%&'*+-.^_`|~09az")->value == "v");
  CHECK(ok.find("empty")->value.empty());
  CHECK(ok.find("e2")->value.empty());
}

TEST_CASE("control bytes in field values", "[http_head]") {
  CHECK(accept(get_with("X: a\tb\r\n")).find("x")->value == "a\tb");
  for (const std::string& value :
       {std::string("a\x01"
                    "b"),
        std::string("a\x7f"
                    "b"),
        std::string("a\x1b[31m"), std::string("a\0b", 3), std::string("\x0b")}) {
    INFO("value bytes: " << value.size());
    CHECK(reject(get_with("X: " + value + "\r\n")) == HeadError::kInvalidHeaderValue);
  }
}

TEST_CASE("Connection must not nominate framing fields", "[http_head]") {
  for (const char* bad : {"host", "Content-Length", "close, transfer-encoding", "HOST, x"}) {
    INFO("Connection: " << bad);
    CHECK(reject(get_with("Connection: " + std::string(bad) + "\r\n")) ==
          HeadError::kConnectionNominatesFraming);
  }
  const RequestHead head = accept(get_with("Connection: keep-alive, Upgrade, X-Foo\r\n"));
  CHECK(head.connection_has("upgrade"));
  CHECK(head.connection_has("x-foo"));
}

TEST_CASE("head limit: exactly at the limit passes, one over is 431", "[http_head]") {
  const std::string prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  const std::string suffix = "\r\n\r\n";
  for (const size_t limit : {kProxyRequestHeadLimit, kTunnelRequestHeadLimit}) {
    const std::string exact =
        prefix + std::string(limit - prefix.size() - suffix.size(), 'v') + suffix;
    REQUIRE(exact.size() == limit);
    const Outcome ok = parse(exact, limit);
    CHECK(ok.status == Status::kComplete);
    CHECK(ok.head.head_size == limit);

    const std::string over =
        prefix + std::string(limit - prefix.size() - suffix.size() + 1, 'v') + suffix;
    const Outcome too_large = parse(over, limit);
    REQUIRE(too_large.status == Status::kError);
    CHECK(too_large.error == HeadError::kHeadTooLarge);
    CHECK(openshell::proxy::head_error_status(too_large.error) == 431);
    CHECK(too_large.reason == "HTTP request headers exceed " + std::to_string(limit) + " bytes");
    CHECK(too_large.consumed == limit);  // refused without waiting for more
  }
  CHECK(openshell::proxy::head_error_status(HeadError::kMalformedHeader) == 400);
  // A malformed line inside the limit is a 400, not a 431.
  CHECK(
      parse("GET / HTTP/1.1\nHost: a\r\n" + std::string(9000, 'x'), kProxyRequestHeadLimit).error ==
      HeadError::kBadLineEnding);
}

TEST_CASE("incremental feeding: split points, pipelining, reset", "[http_head]") {
  const std::string first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
  const std::string second = "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string stream = first + "xyz" + second;
  for (size_t split = 0; split <= first.size(); ++split) {
    RequestHeadParser parser;
    size_t consumed = parser.feed(std::string_view(stream).substr(0, split)).consumed;
    CHECK(consumed == split);
    const auto progress = parser.feed(std::string_view(stream).substr(split));
    REQUIRE(progress.status == Status::kComplete);
    CHECK(consumed + progress.consumed == first.size());
  }
  RequestHeadParser parser;
  REQUIRE(parser.feed(std::string_view(stream)).consumed == first.size());
  CHECK(parser.head().content_length == 3u);
  // Further input is not consumed until reset().
  CHECK(parser.feed(std::string_view(second)).consumed == 0);
  CHECK(parser.status() == Status::kComplete);
  parser.reset();
  CHECK(parser.buffered() == 0);
  const auto next = parser.feed(std::string_view(stream).substr(first.size() + 3));
  REQUIRE(next.status == Status::kComplete);
  CHECK(parser.head().target == "/b");
  CHECK_FALSE(parser.head().content_length);
}

TEST_CASE("serialize_request_head round-trips", "[http_head]") {
  const RequestHead head =
      accept("PUT /x HTTP/1.0\r\nHost: a\r\nX-A:1\r\nContent-Length: 2\r\n\r\n");
  const std::string wire = openshell::proxy::serialize_request_head(head);
  CHECK(wire == "PUT /x HTTP/1.0\r\nHost: a\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n");
  CHECK(accept(wire).headers.size() == 3);
}

TEST_CASE("parse_proxy_uri: spec §11 vectors", "[http_head][uri]") {
  using openshell::proxy::parse_proxy_uri;
  auto uri = parse_proxy_uri("http://10.86.8.223:8000/screenshot/");
  REQUIRE(uri.ok());
  CHECK(uri->scheme == "http");
  CHECK(uri->host == "10.86.8.223");
  CHECK(uri->port == 8000);
  CHECK(uri->path == "/screenshot/");

  uri = parse_proxy_uri("http://example.com/path");
  REQUIRE(uri.ok());
  CHECK(uri->port == 80);
  CHECK_FALSE(uri->explicit_port);
  uri = parse_proxy_uri("https://api.example.com/v1/chat");
  REQUIRE(uri.ok());
  CHECK(uri->port == 443);
  CHECK(uri->scheme == "https");
  uri = parse_proxy_uri("http://10.0.0.1:9090");
  REQUIRE(uri.ok());
  CHECK(uri->path == "/");
  uri = parse_proxy_uri("http://host:8080?key=val&foo=bar");
  REQUIRE(uri.ok());
  CHECK(uri->path == "/?key=val&foo=bar");
  uri = parse_proxy_uri("http://[::1]:8080/test");
  REQUIRE(uri.ok());
  CHECK(uri->host == "::1");
  CHECK(uri->ipv6);
  uri = parse_proxy_uri("http://[fe80::1]/path");
  REQUIRE(uri.ok());
  CHECK(uri->port == 80);
  CHECK_FALSE(parse_proxy_uri("http://example.com#secret").ok());
}

TEST_CASE("parse_proxy_uri: normalisation and errors", "[http_head][uri]") {
  using openshell::proxy::parse_proxy_uri;
  auto uri = parse_proxy_uri("HTTP://Example.COM:8080/A/b?Q=1");
  REQUIRE(uri.ok());
  CHECK(uri->scheme == "http");
  CHECK(uri->host == "example.com");
  CHECK(uri->path == "/A/b?Q=1");
  CHECK(uri->host_header() == "example.com:8080");
  CHECK(parse_proxy_uri("http://example.com:80/")->host_header() == "example.com");
  CHECK(parse_proxy_uri("https://example.com:443/")->host_header() == "example.com");
  CHECK(parse_proxy_uri("http://[::1]:8080/")->host_header() == "[::1]:8080");
  CHECK(parse_proxy_uri("http://[FE80::1]/")->host_header() == "[fe80::1]");
  // Other schemes parse, so the caller can answer unsupported_proxy_scheme.
  uri = parse_proxy_uri("ftp://files.example/x");
  REQUIRE(uri.ok());
  CHECK(uri->scheme == "ftp");
  CHECK(uri->port == 0);
  CHECK(parse_proxy_uri("ftp://files.example:21/x")->port == 21);

  for (const char* bad : {
           "http://example.com/a#frag",
           "http://user:pw@example.com/",
           "http://@example.com/",
           "http:///path",
           "http://:80/",
           "http://?q",
           "http://host:0/",
           "http://host:65536/",
           "http://host:/",
           "http://host:8x/",
           "example.com/path",
           "/path",
           "://host/",
           "1http://host/",
           "http://::1/",
           "http://[::1/",
           "http://[zz::1]/",
           "http://[::1]x/",
           "http://[]/",
           "http://ho st/",
           "http://host/a b",
           "http://host/\x01",
           "http://h%41st/",
           "http://[fe80::1%25eth0]/",
       }) {
    INFO("uri: " << bad);
    const auto result = parse_proxy_uri(bad);
    CHECK_FALSE(result.ok());
    if (!result.ok()) CHECK_FALSE(result.error().message.empty());
  }
}

TEST_CASE("parse_connect_target", "[http_head][uri]") {
  using openshell::proxy::parse_connect_target;
  auto target = parse_connect_target("API.Example.com:443");
  REQUIRE(target.ok());
  CHECK(target->host == "api.example.com");
  CHECK(target->port == 443);
  CHECK_FALSE(target->ipv6);
  target = parse_connect_target("[2001:DB8::1]:8443");
  REQUIRE(target.ok());
  CHECK(target->host == "2001:db8::1");
  CHECK(target->port == 8443);
  CHECK(target->ipv6);
  CHECK(parse_connect_target("a:1")->port == 1);
  CHECK(parse_connect_target("a:65535")->port == 65535);
  CHECK(parse_connect_target("inference.local:443")->host == "inference.local");
  for (const char* bad :
       {"example.com", "example.com:", ":443", "example.com:0", "example.com:65536",
        "example.com:443x", "example.com:-1", "[::1]", "::1:443", "[::1]443", "[::1:443", "a b:443",
        "a/b:443", "user@a:443", "", "[]:443", "example.com:0443x"}) {
    INFO("target: " << bad);
    CHECK_FALSE(parse_connect_target(bad).ok());
  }
}

TEST_CASE("parse_host_header applies the default port", "[http_head][uri]") {
  using openshell::proxy::parse_host_header;
  auto host = parse_host_header("Example.com", 443);
  REQUIRE(host.ok());
  CHECK(host->host == "example.com");
  CHECK(host->port == 443);
  CHECK_FALSE(host->explicit_port);
  CHECK(parse_host_header("example.com:8443", 443)->port == 8443);
  CHECK(parse_host_header("[::1]", 80)->port == 80);
  CHECK_FALSE(parse_host_header("", 80).ok());
  CHECK(openshell::proxy::format_authority("::1", 443, true, true) == "[::1]:443");
  CHECK(openshell::proxy::format_authority("a", 443, false, false) == "a");
}

TEST_CASE("an IPv6 literal with an embedded NUL is refused (fuzz finding)") {
  using namespace std::string_view_literals;
  CHECK_FALSE(openshell::proxy::parse_connect_target("[20b::\0"
                                                     "1]:8"sv)
                  .ok());
  CHECK_FALSE(openshell::proxy::parse_proxy_uri("http://[::1\0"
                                                "x]/"sv)
                  .ok());
  CHECK(openshell::proxy::parse_connect_target("[20b::1]:8").ok());
}
