// Tunnel sniffing: the first-bytes classifier of spec §2.8 step 15 and the ClientHello parser,
// against real captured hellos (tests/data/client_hellos) and hand-built malformed ones.
#include "openshell/proxy/tunnel_sniff.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstddef>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../policy/test_data.hpp"

using openshell::proxy::classify_tunnel_bytes;
using openshell::proxy::ClientHelloInfo;
using openshell::proxy::ClientHelloStatus;
using openshell::proxy::kMaxClientHelloBytes;
using openshell::proxy::kTunnelSniffBytes;
using openshell::proxy::parse_client_hello;
using openshell::proxy::TunnelProtocol;
using Strings = std::vector<std::string>;

namespace {

std::string load_hello(const std::string& name) {
  const std::string path =
      openshell::test::source_root() + "/tests/data/client_hellos/" + name + ".hex";
  std::ifstream in(path);
  INFO("reading " << path);
  REQUIRE(in.good());
  std::string hex;
  in >> hex;
  REQUIRE(hex.size() % 2 == 0);
  std::string bytes;
  for (size_t i = 0; i < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

// Big-endian length prefixes, and the structures of RFC 8446 §4.1.2 built from them.
std::string be(size_t value, size_t width) {
  std::string out;
  for (size_t i = width; i > 0; --i)
    out.push_back(static_cast<char>(value >> (8 * (i - 1))));
  return out;
}
std::string vec(size_t width, const std::string& data) {
  return be(data.size(), width) + data;
}
std::string ext(size_t type, const std::string& data) {
  return be(type, 2) + vec(2, data);
}
std::string sni_ext(const std::string& name) {
  return ext(0, vec(2, std::string(1, '\0') + vec(2, name)));
}
std::string alpn_ext(const Strings& names) {
  std::string list;
  for (const auto& name : names)
    list += vec(1, name);
  return ext(16, vec(2, list));
}

// legacy_version, random, session_id, one cipher suite, null compression.
const std::string kHelloPrefix = "\x03\x03" + std::string(32, 'r') + vec(1, "") +
                                 vec(2, std::string("\x13\x01", 2)) + vec(1, std::string(1, '\0'));

std::string hello_body(const std::string& extensions) {
  return kHelloPrefix + vec(2, extensions);
}
std::string handshake(const std::string& body) {
  return "\x01" + vec(3, body);
}
// Splits a handshake message into handshake records of at most `fragment` payload bytes.
std::string records(const std::string& message, size_t fragment = 16384) {
  std::string out;
  for (size_t at = 0; at < message.size(); at += fragment) {
    out += "\x16\x03\x01" + vec(2, message.substr(at, fragment));
  }
  return out;
}
std::string wrap(const std::string& extensions) {
  return records(handshake(hello_body(extensions)));
}

ClientHelloStatus status_of(const std::string& bytes) {
  return parse_client_hello(bytes).status;
}

// Every proper prefix is kNeedMore with a hint that never overshoots the real size.
void check_prefixes(const std::string& hello) {
  for (size_t size = 0; size < hello.size(); ++size) {
    const auto parse = parse_client_hello(std::string_view(hello).substr(0, size));
    INFO("prefix of " << size << " bytes");
    REQUIRE(parse.status == ClientHelloStatus::kNeedMore);
    REQUIRE(parse.needed > size);
    REQUIRE(parse.needed <= hello.size());
  }
}

}  // namespace

TEST_CASE("real ClientHellos: SNI and ALPN", "[tunnel_sniff]") {
  struct Case {
    std::string file;
    std::string server_name;
    Strings alpn;
    bool http11;
  };
  const std::vector<Case> cases = {
      {"curl_http11", "api.example.test", {"http/1.1"}, true},
      {"curl_http2", "api.example.test", {"h2", "http/1.1"}, true},
      {"curl_ip_literal", "", {"h2", "http/1.1"}, true},
      {"openssl_alpn_h2", "x.test", {"h2"}, false},
      {"openssl_no_sni_no_alpn", "", {}, true},
      {"python_alpn_h2", "py.example.test", {"h2"}, false},
  };
  for (const auto& c : cases) {
    INFO(c.file);
    const std::string hello = load_hello(c.file);
    CHECK(classify_tunnel_bytes(hello) == TunnelProtocol::kTls);
    const auto parse = parse_client_hello(hello);
    REQUIRE(parse.status == ClientHelloStatus::kComplete);
    CHECK(parse.info.server_name == c.server_name);
    CHECK(parse.info.alpn == c.alpn);
    CHECK(parse.info.offers_http11() == c.http11);
    CHECK(parse.needed == 0);

    // Whatever follows the hello (early data, a pipelined record) is not its business.
    const auto with_more = parse_client_hello(hello + std::string("\x17\x03\x03\x00\x01x", 6));
    CHECK(with_more.status == ClientHelloStatus::kComplete);
    CHECK(with_more.info.alpn == c.alpn);

    check_prefixes(hello);

    // The same handshake message spread over records of any size parses the same.
    const std::string message = hello.substr(5);
    for (const size_t fragment : std::vector<size_t>{1, 2, 3, 4, 5, 7, 100, 256, 511}) {
      INFO("fragment " << fragment);
      const auto fragmented = parse_client_hello(records(message, fragment));
      REQUIRE(fragmented.status == ClientHelloStatus::kComplete);
      CHECK(fragmented.info.server_name == c.server_name);
      CHECK(fragmented.info.alpn == c.alpn);
    }
    check_prefixes(records(message, 7));
  }
}

TEST_CASE("hand-built ClientHellos that are valid", "[tunnel_sniff]") {
  // Pre-TLS-1.3 clients may omit the extensions block entirely.
  const auto bare = parse_client_hello(records(handshake(kHelloPrefix)));
  REQUIRE(bare.status == ClientHelloStatus::kComplete);
  CHECK(bare.info.server_name.empty());
  CHECK(bare.info.alpn.empty());
  CHECK(bare.info.offers_http11());

  CHECK(status_of(wrap("")) == ClientHelloStatus::kComplete);  // empty extensions block
  CHECK(status_of(wrap(sni_ext(std::string(255, 'a')))) == ClientHelloStatus::kComplete);

  // A server_name entry of an unknown type is skipped; the host_name is still found.
  const auto other_type =
      parse_client_hello(wrap(ext(0, vec(2, "\x01" + vec(2, "x") + '\0' + vec(2, "host.test")))));
  REQUIRE(other_type.status == ClientHelloStatus::kComplete);
  CHECK(other_type.info.server_name == "host.test");

  const auto split_header = parse_client_hello(records(handshake(hello_body(alpn_ext({"h2"}))), 2));
  REQUIRE(split_header.status == ClientHelloStatus::kComplete);
  CHECK(split_header.info.alpn == Strings{"h2"});
  CHECK_FALSE(split_header.info.offers_http11());
}

TEST_CASE("offers_http11", "[tunnel_sniff]") {
  const auto offers = [](Strings alpn) {
    return ClientHelloInfo{"", std::move(alpn)}.offers_http11();
  };
  CHECK(offers({}));
  CHECK(offers({"http/1.1"}));
  CHECK(offers({"h2", "http/1.1"}));
  CHECK_FALSE(offers({"h2"}));
  CHECK_FALSE(offers({"http/1.0"}));
  CHECK_FALSE(offers({"HTTP/1.1"}));  // ALPN identifiers are exact byte strings
}

TEST_CASE("malformed ClientHellos are invalid", "[tunnel_sniff]") {
  const std::string random(32, 'r');
  const std::string suites = vec(2, std::string("\x13\x01", 2));
  const std::string null_compression = vec(1, std::string(1, '\0'));
  const auto body = [&](const std::string& session_id, const std::string& cipher_suites,
                        const std::string& compression) {
    return "\x03\x03" + random + session_id + cipher_suites + compression + vec(2, "");
  };
  const auto invalid = [](const std::string& bytes) {
    return status_of(bytes) == ClientHelloStatus::kInvalid;
  };

  SECTION("fixed fields") {
    CHECK(
        invalid(records(handshake(body(vec(1, std::string(33, 's')), suites, null_compression)))));
    CHECK(invalid(records(handshake(body("\x20", suites, null_compression)))));  // id runs out
    CHECK(invalid(records(handshake(body(vec(1, ""), vec(2, "\x13"), null_compression)))));
    CHECK(invalid(records(handshake(body(vec(1, ""), vec(2, ""), null_compression)))));
    CHECK(invalid(records(handshake(body(vec(1, ""), suites, vec(1, ""))))));
    CHECK(invalid(records(handshake(std::string(20, '\x03')))));  // random cut short
  }
  SECTION("extension lengths") {
    const std::string good = alpn_ext({"h2"});
    CHECK(invalid(records(handshake(kHelloPrefix + be(good.size() + 1, 2) + good))));
    CHECK(invalid(records(handshake(kHelloPrefix + be(good.size() - 1, 2) + good))));
    CHECK(invalid(records(handshake(kHelloPrefix + std::string(1, '\0')))));  // half a length
    CHECK(invalid(
        wrap(be(16, 2) + be(100, 2) + std::string("\x00\x03\x02h2", 5))));  // data past the list
    CHECK(invalid(wrap(std::string("\x00\x10\x00", 3))));                   // half an extension
  }
  SECTION("server_name") {
    CHECK(invalid(wrap(ext(0, ""))));
    CHECK(invalid(wrap(ext(0, vec(2, "")))));
    CHECK(invalid(wrap(ext(0, vec(2, std::string("\0", 1) + vec(2, ""))))));      // empty name
    CHECK(invalid(wrap(ext(0, vec(2, std::string("\0\0\x09", 3) + "a.test")))));  // name overruns
    CHECK(invalid(wrap(ext(0, be(50, 2) + '\0' + vec(2, "a.test")))));            // list overruns
    CHECK(invalid(wrap(ext(0, vec(2, '\0' + vec(2, "a.test")) + "x"))));          // trailing byte
    CHECK(invalid(wrap(ext(0, vec(2, '\0' + vec(2, "a.test") + '\0' + vec(2, "b.test"))))));
    CHECK(invalid(wrap(sni_ext(std::string(256, 'a')))));
    CHECK(invalid(wrap(sni_ext(std::string("a\0b", 3)))));
    CHECK(invalid(wrap(sni_ext("a\nb"))));
  }
  SECTION("ALPN") {
    CHECK(invalid(wrap(alpn_ext({"h2", ""}))));  // empty protocol name
    CHECK(invalid(wrap(alpn_ext({}))));          // empty list
    CHECK(invalid(wrap(ext(16, ""))));
    CHECK(invalid(wrap(ext(16, vec(2, "\x05h2")))));        // name overruns the list
    CHECK(invalid(wrap(ext(16, be(9, 2) + "\x02h2"))));     // list overruns the extension
    CHECK(invalid(wrap(ext(16, vec(2, "\x02h2") + "x"))));  // trailing byte
  }
  SECTION("duplicate extensions") {
    CHECK(invalid(wrap(alpn_ext({"h2"}) + alpn_ext({"http/1.1"}))));
    CHECK(invalid(wrap(sni_ext("a.test") + alpn_ext({"h2"}) + sni_ext("a.test"))));
    CHECK(invalid(wrap(ext(0xff01, "") + ext(0xff01, ""))));
  }
  SECTION("records and handshake framing") {
    const std::string message = handshake(hello_body(sni_ext("a.test")));
    const std::string good = records(message);
    std::string other_record = good;
    other_record[0] = '\x17';
    CHECK(invalid(other_record));
    CHECK(invalid(std::string("\x16\x03\x05", 3)));
    CHECK(invalid(std::string("\x16\x02", 2)));
    CHECK(invalid("\x15"));
    CHECK(invalid(std::string("\x16\x03\x01\x00\x00", 5)));  // zero-length fragment
    CHECK(invalid(std::string("\x16\x03\x01\x40\x01", 5)));  // over 2^14
    CHECK(invalid(records("\x02" + message.substr(1))));     // ServerHello
    CHECK(invalid(std::string("\x16\x03\x01\x00\x01\x02", 6)));
    // The record carries bytes past the hello, whether or not they have arrived yet.
    CHECK(invalid(records(message + "x")));
    CHECK(invalid("\x16\x03\x01" + be(message.size() + 10, 2) + message));
    // A later record fragment that overruns the message.
    CHECK(invalid(records(message.substr(0, 10)) + records(message.substr(10) + "xy")));
    // A record of another type in the middle of the hello.
    CHECK(invalid(records(message.substr(0, 10)) + "\x17\x03\x03" + vec(2, message.substr(10))));
  }
}

TEST_CASE("ClientHello input is capped at 64 KiB", "[tunnel_sniff]") {
  // Records of 2^14 bytes: a message of M bytes costs M + 5 * ceil(M / 2^14) bytes of input.
  // 65516 + 5 * 4 == 65536: the largest hello that fits, padded with extension 21.
  const auto padded = [](size_t message_size) {
    const size_t pad = message_size - 4 - kHelloPrefix.size() - 2 - 4 - sni_ext("a.test").size();
    return records(handshake(hello_body(sni_ext("a.test") + ext(21, std::string(pad, '\0')))));
  };
  const std::string largest = padded(65516);
  REQUIRE(largest.size() == kMaxClientHelloBytes);
  const auto parse = parse_client_hello(largest + "trailing bytes past the cap");
  REQUIRE(parse.status == ClientHelloStatus::kComplete);
  CHECK(parse.info.server_name == "a.test");
  CHECK(parse_client_hello(largest.substr(0, 40000)).needed == kMaxClientHelloBytes);

  const std::string too_large = padded(65517);
  REQUIRE(too_large.size() == kMaxClientHelloBytes + 1);
  CHECK(status_of(too_large) == ClientHelloStatus::kInvalid);
  // Refused as soon as the lengths show it cannot fit, not after 64 KiB have been buffered.
  CHECK(status_of(too_large.substr(0, 9)) == ClientHelloStatus::kInvalid);
  CHECK(status_of(std::string("\x16\x03\x01\x40\x00\x01\xff\xff\xff", 9)) ==
        ClientHelloStatus::kInvalid);  // a 16 MiB handshake length

  // Tiny records add 5 bytes of overhead each: 1-byte fragments of a 12 KB hello exceed the cap.
  const std::string dribble = records(handshake(hello_body(ext(21, std::string(12000, '\0')))), 1);
  CHECK(status_of(dribble) == ClientHelloStatus::kInvalid);
  CHECK(status_of(dribble.substr(0, 6000)) == ClientHelloStatus::kNeedMore);
}

TEST_CASE("classify_tunnel_bytes", "[tunnel_sniff]") {
  const auto classify = [](std::string_view bytes) { return classify_tunnel_bytes(bytes); };
  const std::string preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const Strings methods = {"GET ",   "HEAD ",    "POST ",    "PUT ",  "DELETE ",
                           "PATCH ", "OPTIONS ", "CONNECT ", "TRACE "};

  CHECK(classify("") == TunnelProtocol::kNeedMore);
  for (const auto& method : methods) {
    INFO(method);
    CHECK(classify(method) == TunnelProtocol::kHttp);
    CHECK(classify(method + "/ HTTP/1.1\r\nHost: a.test\r\n\r\n") == TunnelProtocol::kHttp);
    for (size_t size = 1; size < method.size(); ++size) {
      CHECK(classify(method.substr(0, size)) == TunnelProtocol::kNeedMore);
    }
  }
  CHECK(classify("get / HTTP/1.1\r\n") == TunnelProtocol::kUnknown);  // methods are case-sensitive
  CHECK(classify("GETX") == TunnelProtocol::kUnknown);
  CHECK(classify("GET\t/") == TunnelProtocol::kUnknown);
  CHECK(classify("PROPFIND / HTTP/1.1\r\n") == TunnelProtocol::kUnknown);

  CHECK(classify(preface) == TunnelProtocol::kH2cPreface);
  CHECK(classify(preface + std::string("\x00\x00\x12\x04", 4)) == TunnelProtocol::kH2cPreface);
  for (size_t size = 1; size < preface.size(); ++size) {
    CHECK(classify(preface.substr(0, size)) == TunnelProtocol::kNeedMore);
  }
  CHECK(classify("PRI * HTTP/1.1\r\n") == TunnelProtocol::kUnknown);
  CHECK(classify("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n") == TunnelProtocol::kUnknown);

  for (const char minor : {'\0', '\1', '\2', '\3', '\4'}) {
    CHECK(classify(std::string("\x16\x03", 2) + minor) == TunnelProtocol::kTls);
  }
  CHECK(classify("\x16") == TunnelProtocol::kNeedMore);
  CHECK(classify("\x16\x03") == TunnelProtocol::kNeedMore);
  CHECK(classify("\x16\x03\x05") == TunnelProtocol::kUnknown);
  CHECK(classify("\x16\x02\x01") == TunnelProtocol::kUnknown);
  CHECK(classify("\x16\x04") == TunnelProtocol::kUnknown);
  CHECK(classify("\x17\x03\x03") == TunnelProtocol::kUnknown);          // application data
  CHECK(classify("\x80\x2e\x01\x00\x02") == TunnelProtocol::kUnknown);  // SSLv2-style hello

  CHECK(classify(std::string(1, '\0')) == TunnelProtocol::kUnknown);
  CHECK(classify("SSH-2.0-OpenSSH_9.2\r\n") == TunnelProtocol::kUnknown);
  CHECK(classify("\r\n") == TunnelProtocol::kUnknown);

  // The dispatcher stops waiting at kTunnelSniffBytes: nothing that long is still undecided.
  for (const auto& input : Strings{preface + "x", methods[6] + std::string(30, 'a'),
                                   std::string(40, 'P'), std::string(40, '\x16')}) {
    for (size_t size = kTunnelSniffBytes; size <= input.size(); ++size) {
      CHECK(classify(input.substr(0, size)) != TunnelProtocol::kNeedMore);
    }
  }
}
