// PROXY protocol v2 with identity TLVs: round trips, incremental decoding, HMAC and replay checks.
#include "openshell/core/proxy_protocol.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

using openshell::core::decode_proxy_header;
using openshell::core::encode_proxy_header;
using openshell::core::kProxyV2MaxHeaderSize;
using openshell::core::ProxyDecodeOptions;
using openshell::core::ProxyDecodeResult;
using openshell::core::ProxyFamily;
using openshell::core::ProxyHeader;
using Status = ProxyDecodeResult::Status;

namespace {

constexpr int64_t kNow = 1'790'000'000'000;  // a fixed "now" in Unix ms
const std::vector<uint8_t> kKey = {'s', 'e', 'c', 'r', 'e', 't', '-', 'k', 'e', 'y'};

ProxyHeader sample_v4() {
  ProxyHeader header;
  header.family = ProxyFamily::kTcp4;
  header.source.ip = {127, 0, 0, 1};
  header.source.port = 41000;
  header.destination.ip = {127, 0, 0, 1};
  header.destination.port = 3128;
  header.pid = 4242;
  header.exe_path = "/usr/bin/curl";
  openshell::core::Sha256Digest digest{};
  for (std::size_t i = 0; i < digest.size(); ++i)
    digest[i] = static_cast<uint8_t>(i * 7);
  header.exe_sha256 = digest;
  header.timestamp_ms = static_cast<uint64_t>(kNow);
  return header;
}

ProxyHeader sample_v6() {
  ProxyHeader header = sample_v4();
  header.family = ProxyFamily::kTcp6;
  header.source.ip = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  header.destination.ip = {};
  header.destination.ip[15] = 1;            // ::1
  header.exe_path = "/opt/bin/n\xC3\xA9t";  // UTF-8 survives
  return header;
}

std::vector<uint8_t> encode(const ProxyHeader& header, const std::vector<uint8_t>& key = kKey) {
  auto wire = encode_proxy_header(header, key);
  REQUIRE(wire.ok());
  return *wire;
}

ProxyDecodeOptions keyed(int64_t now = kNow) {
  ProxyDecodeOptions options;
  options.key = kKey;
  options.now_ms = now;
  return options;
}

void require_same_identity(const ProxyHeader& a, const ProxyHeader& b) {
  CHECK(a.family == b.family);
  CHECK(a.source == b.source);
  CHECK(a.destination == b.destination);
  CHECK(a.pid == b.pid);
  CHECK(a.exe_path == b.exe_path);
  CHECK(a.exe_sha256 == b.exe_sha256);
  CHECK(a.timestamp_ms == b.timestamp_ms);
  CHECK(a.ancestors == b.ancestors);
}

// An UNSPEC header holding one raw TLV of `type` with `value`.
std::vector<uint8_t> with_tlv(uint8_t type, const std::string& value) {
  std::vector<uint8_t> wire = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                               0x55, 0x49, 0x54, 0x0A, 0x21, 0x00, 0x00, 0x00};
  const std::size_t length = 3 + value.size();
  wire[14] = static_cast<uint8_t>(length >> 8);
  wire[15] = static_cast<uint8_t>(length);
  wire.push_back(type);
  wire.push_back(static_cast<uint8_t>(value.size() >> 8));
  wire.push_back(static_cast<uint8_t>(value.size()));
  wire.insert(wire.end(), value.begin(), value.end());
  return wire;
}

}  // namespace

TEST_CASE("PROXY v2 round trip, IPv4 and IPv6, with payload after the header") {
  for (const ProxyHeader& header : {sample_v4(), sample_v6()}) {
    std::vector<uint8_t> wire = encode(header);
    const std::size_t header_size = wire.size();
    wire.push_back('G');  // the client's first payload byte must be left alone
    const ProxyDecodeResult decoded = decode_proxy_header(wire, keyed());
    REQUIRE(decoded.status == Status::kComplete);
    CHECK(decoded.consumed == header_size);
    CHECK(decoded.header.authenticated);
    CHECK(decoded.header.has_hmac);
    require_same_identity(decoded.header, header);
    // Without a key (a trusted transport) the HMAC is not checked, but its presence is reported.
    const ProxyDecodeResult unkeyed = decode_proxy_header(wire);
    REQUIRE(unkeyed.status == Status::kComplete);
    CHECK_FALSE(unkeyed.header.authenticated);
    CHECK(unkeyed.header.has_hmac);
  }
}

TEST_CASE("PROXY v2 fixed bytes follow the haproxy spec") {
  const std::vector<uint8_t> wire = encode(sample_v4());
  const std::vector<uint8_t> start = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A,
                                      0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11};
  CHECK(std::vector<uint8_t>(wire.begin(), wire.begin() + 14) == start);
  CHECK(std::size_t{wire[14]} * 256 + wire[15] == wire.size() - 16);
  // src 127.0.0.1, dst 127.0.0.1, src port 41000 (0xA028), dst port 3128 (0x0C38)
  const std::vector<uint8_t> addresses = {127, 0, 0, 1, 127, 0, 0, 1, 0xA0, 0x28, 0x0C, 0x38};
  CHECK(std::vector<uint8_t>(wire.begin() + 16, wire.begin() + 28) == addresses);
  // First TLV: pid 4242 = 0x1092, big-endian.
  const std::vector<uint8_t> pid_tlv = {0xE0, 0x00, 0x04, 0x00, 0x00, 0x10, 0x92};
  CHECK(std::vector<uint8_t>(wire.begin() + 28, wire.begin() + 35) == pid_tlv);
}

TEST_CASE("PROXY v2 without key: no HMAC TLV, decodes unauthenticated") {
  ProxyHeader header = sample_v4();
  header.timestamp_ms.reset();
  const std::vector<uint8_t> wire = encode(header, {});
  CHECK(wire.size() == encode(sample_v4()).size() - 35 - 11);  // no HMAC TLV, no timestamp TLV
  const ProxyDecodeResult decoded = decode_proxy_header(wire);
  REQUIRE(decoded.status == Status::kComplete);
  CHECK_FALSE(decoded.header.authenticated);
  CHECK_FALSE(decoded.header.has_hmac);
  CHECK(decoded.header.pid == 4242u);
  // A receiver that requires the key refuses it.
  const ProxyDecodeResult refused = decode_proxy_header(wire, keyed());
  CHECK(refused.status == Status::kInvalid);
  CHECK(refused.reason.find("no HMAC") != std::string::npos);
}

TEST_CASE("PROXY v2 UNSPEC carries TLVs and no addresses") {
  ProxyHeader header;
  header.pid = 1;
  header.timestamp_ms = static_cast<uint64_t>(kNow);
  const ProxyDecodeResult decoded = decode_proxy_header(encode(header), keyed());
  REQUIRE(decoded.status == Status::kComplete);
  CHECK(decoded.header.family == ProxyFamily::kUnspec);
  CHECK(decoded.header.pid == 1u);
}

TEST_CASE("PROXY v2 every truncation needs more bytes") {
  for (const ProxyHeader& header : {sample_v4(), sample_v6()}) {
    const std::vector<uint8_t> wire = encode(header);
    for (std::size_t n = 0; n < wire.size(); ++n) {
      const ProxyDecodeResult partial = decode_proxy_header({wire.data(), n}, keyed());
      INFO("prefix of " << n << " bytes");
      REQUIRE(partial.status == Status::kNeedMore);
    }
  }
}

TEST_CASE("PROXY v2 any altered byte fails the HMAC") {
  const std::vector<uint8_t> wire = encode(sample_v4());
  // Past the fixed 16 bytes every byte is an address, a TLV type/length or a value; each
  // flip must be refused, by the HMAC or by the structure check that precedes it.
  for (std::size_t i = 16; i < wire.size(); ++i) {
    std::vector<uint8_t> tampered = wire;
    tampered[i] ^= 0x01;
    const ProxyDecodeResult decoded = decode_proxy_header(tampered, keyed());
    INFO("byte " << i);
    REQUIRE(decoded.status == Status::kInvalid);
  }
  std::vector<uint8_t> tampered = wire;
  tampered[20] ^= 0x01;  // a source address byte: structure intact, only the MAC can catch it
  const ProxyDecodeResult decoded = decode_proxy_header(tampered, keyed());
  CHECK(decoded.reason.find("HMAC mismatch") != std::string::npos);
}

TEST_CASE("PROXY v2 wrong key is refused") {
  const std::vector<uint8_t> other = {'o', 't', 'h', 'e', 'r'};
  const std::vector<uint8_t> wire = encode(sample_v4(), other);
  const ProxyDecodeResult decoded = decode_proxy_header(wire, keyed());
  REQUIRE(decoded.status == Status::kInvalid);
  CHECK(decoded.reason.find("HMAC mismatch") != std::string::npos);
}

TEST_CASE("PROXY v2 timestamps outside the skew window are refused") {
  const std::vector<uint8_t> wire = encode(sample_v4());
  CHECK(decode_proxy_header(wire, keyed(kNow + 60'000)).status == Status::kComplete);
  CHECK(decode_proxy_header(wire, keyed(kNow - 60'000)).status == Status::kComplete);
  const ProxyDecodeResult old = decode_proxy_header(wire, keyed(kNow + 60'001));
  REQUIRE(old.status == Status::kInvalid);
  CHECK(old.reason.find("timestamp") != std::string::npos);
  CHECK(decode_proxy_header(wire, keyed(kNow - 61'000)).status == Status::kInvalid);
  // Far-future u64 timestamps do not overflow into "fresh".
  ProxyHeader future = sample_v4();
  future.timestamp_ms = UINT64_MAX;
  CHECK(decode_proxy_header(encode(future), keyed()).status == Status::kInvalid);
}

TEST_CASE("PROXY v2 malformed prefixes are refused early") {
  const std::vector<uint8_t> wire = encode(sample_v4());
  SECTION("HTTP instead of PROXY") {
    const std::string http = "GET / HTTP/1.1\r\n";
    const ProxyDecodeResult decoded =
        decode_proxy_header({reinterpret_cast<const uint8_t*>(http.data()), http.size()}, keyed());
    CHECK(decoded.status == Status::kInvalid);
    CHECK(decoded.reason.find("signature") != std::string::npos);
    // One wrong byte is enough to say no.
    const std::vector<uint8_t> one = {'G'};
    CHECK(decode_proxy_header(one, keyed()).status == Status::kInvalid);
  }
  SECTION("version 1 and LOCAL are refused") {
    for (const uint8_t version_command : {uint8_t{0x11}, uint8_t{0x20}, uint8_t{0x22}}) {
      std::vector<uint8_t> bad(wire.begin(), wire.begin() + 13);
      bad[12] = version_command;
      CHECK(decode_proxy_header(bad, keyed()).status == Status::kInvalid);
    }
  }
  SECTION("UDP and UNIX families are refused") {
    for (const uint8_t family : {uint8_t{0x12}, uint8_t{0x22}, uint8_t{0x31}, uint8_t{0xFF}}) {
      std::vector<uint8_t> bad(wire.begin(), wire.begin() + 14);
      bad[13] = family;
      CHECK(decode_proxy_header(bad, keyed()).status == Status::kInvalid);
    }
  }
  SECTION("a length over the bound is refused before the bytes arrive") {
    std::vector<uint8_t> bad(wire.begin(), wire.begin() + 16);
    bad[14] = 0xFF;
    bad[15] = 0xFF;
    const ProxyDecodeResult decoded = decode_proxy_header(bad, keyed());
    CHECK(decoded.status == Status::kInvalid);
    CHECK(decoded.reason.find(std::to_string(kProxyV2MaxHeaderSize)) != std::string::npos);
  }
  SECTION("a length shorter than the addresses") {
    std::vector<uint8_t> bad(wire.begin(), wire.begin() + 16);
    bad[14] = 0;
    bad[15] = 11;
    CHECK(decode_proxy_header(bad, keyed()).status == Status::kInvalid);
  }
  SECTION("a TLV that runs past the end") {
    std::vector<uint8_t> bad = wire;
    bad[29] = 0x7F;  // pid TLV length high byte
    const ProxyDecodeResult decoded = decode_proxy_header(bad, keyed());
    CHECK(decoded.status == Status::kInvalid);
    CHECK(decoded.reason.find("past the end") != std::string::npos);
  }
  SECTION("a header cut inside a TLV header") {
    // Shrink the declared length by one: the last TLV (the HMAC) no longer fits.
    std::vector<uint8_t> bad = wire;
    bad[15] = static_cast<uint8_t>(bad[15] - 1);
    CHECK(decode_proxy_header(bad, keyed()).status == Status::kInvalid);
    std::vector<uint8_t> stub = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55,
                                 0x49, 0x54, 0x0A, 0x21, 0x00, 0x00, 0x02, 0xE0, 0x00};
    const ProxyDecodeResult decoded = decode_proxy_header(stub);
    CHECK(decoded.status == Status::kInvalid);
    CHECK(decoded.reason.find("truncated TLV") != std::string::npos);
  }
  SECTION("wrong fixed TLV sizes and duplicates") {
    // UNSPEC header with a 3-byte pid TLV.
    std::vector<uint8_t> bad = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54,
                                0x0A, 0x21, 0x00, 0x00, 0x06, 0xE0, 0x00, 0x03, 1,    2,    3};
    CHECK(decode_proxy_header(bad).status == Status::kInvalid);
    std::vector<uint8_t> twice = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                  0x54, 0x0A, 0x21, 0x00, 0x00, 0x0E, 0xE0, 0x00, 0x04, 0,
                                  0,    0,    1,    0xE0, 0x00, 0x04, 0,    0,    0,    2};
    const ProxyDecodeResult decoded = decode_proxy_header(twice);
    CHECK(decoded.status == Status::kInvalid);
    CHECK(decoded.reason.find("duplicate") != std::string::npos);
  }
  SECTION("unknown TLVs are skipped") {
    std::vector<uint8_t> noop = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54,
                                 0x0A, 0x21, 0x00, 0x00, 0x05, 0x04, 0x00, 0x02, 0,    0};
    const ProxyDecodeResult decoded = decode_proxy_header(noop);
    CHECK(decoded.status == Status::kComplete);
    CHECK(decoded.consumed == noop.size());
  }
}

TEST_CASE("PROXY v2 encoder refuses what the decoder would") {
  ProxyHeader header = sample_v4();
  header.exe_path = std::string(4097, 'a');
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());
  header.exe_path = std::string(4096, 'a');
  CHECK(encode_proxy_header(header, kKey).ok());
  header.exe_path = "/bin/\xFF";
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());
  header.exe_path = std::string("/bin/a\0b", 8);
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());
  header.exe_path = "";
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());
  header = sample_v4();
  header.timestamp_ms.reset();
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());  // a MAC without a timestamp is replayable
}

TEST_CASE("PROXY v2 carries the ancestors, nearest first, under the HMAC") {
  ProxyHeader header = sample_v4();
  header.ancestors = {"/usr/bin/bash", "/usr/bin/n\xC3\xA9t", "/usr/bin/sh"};
  const std::vector<uint8_t> wire = encode(header);
  const ProxyDecodeResult decoded = decode_proxy_header(wire, keyed());
  REQUIRE(decoded.status == Status::kComplete);
  CHECK(decoded.header.authenticated);
  require_same_identity(decoded.header, header);

  // The list is covered by the MAC: swapping one byte of an ancestor fails it.
  std::vector<uint8_t> altered = wire;
  const std::string needle = "bash";
  const auto at = std::search(altered.begin(), altered.end(), needle.begin(), needle.end());
  REQUIRE(at != altered.end());
  *at = 'd';
  CHECK(decode_proxy_header(altered, keyed()).status == Status::kInvalid);
}

TEST_CASE("PROXY v2 encoder drops the farthest ancestors that do not fit") {
  ProxyHeader header = sample_v4();
  header.exe_path = std::string(4096, 'e');  // the longest exe path still leaves room
  for (int i = 0; i < 100; ++i)
    header.ancestors.push_back("/usr/bin/ancestor-" + std::string(40, 'x') + std::to_string(i));
  const std::vector<uint8_t> wire = encode(header);
  CHECK(wire.size() <= kProxyV2MaxHeaderSize);
  const ProxyDecodeResult decoded = decode_proxy_header(wire, keyed());
  REQUIRE(decoded.status == Status::kComplete);
  const auto& sent = decoded.header.ancestors;
  REQUIRE_FALSE(sent.empty());
  CHECK(sent.size() < header.ancestors.size());
  CHECK(sent.size() <= openshell::core::kProxyV2MaxAncestors);
  // What is sent is the nearest part, in order.
  CHECK(std::equal(sent.begin(), sent.end(), header.ancestors.begin()));

  header.ancestors = {"/usr/bin/ok", ""};
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());
  header.ancestors = {"/usr/bin/\xFF"};
  CHECK_FALSE(encode_proxy_header(header, kKey).ok());
}

TEST_CASE("PROXY v2 malformed ancestors are refused") {
  const auto status_of = [](const std::string& value) {
    return decode_proxy_header(with_tlv(0xE5, value)).status;
  };
  CHECK(status_of(std::string("/usr/bin/bash\0/usr/bin/sh\0", 26)) == Status::kComplete);
  CHECK(decode_proxy_header(with_tlv(0xE5, std::string("/a\0/b\0", 6))).header.ancestors ==
        std::vector<std::string>{"/a", "/b"});
  CHECK(status_of("") == Status::kInvalid);                             // empty list
  CHECK(status_of("/usr/bin/bash") == Status::kInvalid);                // unterminated
  CHECK(status_of(std::string("/a\0\0", 4)) == Status::kInvalid);       // empty entry
  CHECK(status_of(std::string("/bin/\xFF\0", 7)) == Status::kInvalid);  // not UTF-8
  CHECK(status_of(std::string(3000, 'a') + '\0') == Status::kInvalid);  // over the bound
  std::string many;
  for (int i = 0; i < 65; ++i)
    many += std::string("/a") + '\0';
  CHECK(status_of(many) == Status::kInvalid);  // more than kProxyV2MaxAncestors
  // Twice is refused like any other identity TLV.
  std::vector<uint8_t> twice = with_tlv(0xE5, std::string("/a\0", 3));
  const std::vector<uint8_t> again = {0xE5, 0x00, 0x03, '/', 'b', 0};
  twice.insert(twice.end(), again.begin(), again.end());
  twice[15] = static_cast<uint8_t>(twice[15] + again.size());
  const ProxyDecodeResult decoded = decode_proxy_header(twice);
  CHECK(decoded.status == Status::kInvalid);
  CHECK(decoded.reason.find("duplicate") != std::string::npos);
}
