// libFuzzer target for the tunnel sniffer (classify_tunnel_bytes, parse_client_hello).
// Invariants: results are monotonic in the input (a prefix's verdict never changes once given),
// the two functions agree on what is TLS, a complete hello carries only valid names, and the
// same handshake message parses the same however it is split into records.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "openshell/proxy/tunnel_sniff.hpp"

namespace {

using openshell::proxy::ClientHelloParse;
using openshell::proxy::ClientHelloStatus;
using openshell::proxy::kMaxClientHelloBytes;
using openshell::proxy::kTunnelSniffBytes;
using openshell::proxy::parse_client_hello;
using openshell::proxy::TunnelProtocol;

// Prefixes checked one by one; the parser is O(n), so this keeps each run O(n).
constexpr size_t kPrefixSweepBytes = 64;

// abort() rather than assert(): the invariant must hold in NDEBUG builds too.
void require(bool ok) {
  if (!ok) std::abort();
}

bool same_info(const ClientHelloParse& a, const ClientHelloParse& b) {
  return a.info.server_name == b.info.server_name && a.info.alpn == b.info.alpn;
}

ClientHelloParse checked_parse(std::string_view input) {
  ClientHelloParse parse = parse_client_hello(input);
  if (parse.status == ClientHelloStatus::kNeedMore) {
    require(parse.needed > input.size() && parse.needed <= kMaxClientHelloBytes);
  } else {
    require(parse.needed == 0);
  }
  if (parse.status == ClientHelloStatus::kComplete) {
    for (const auto& name : parse.info.alpn)
      require(!name.empty() && name.size() <= 255);
    const auto& host = parse.info.server_name;
    require(host.size() <= 255);
    require(std::none_of(host.begin(), host.end(),
                         [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }));
    const auto& alpn = parse.info.alpn;
    const bool http11 =
        alpn.empty() || std::find(alpn.begin(), alpn.end(), "http/1.1") != alpn.end();
    require(parse.info.offers_http11() == http11);
    require(openshell::proxy::classify_tunnel_bytes(input) == TunnelProtocol::kTls);
  } else {
    require(parse.info.server_name.empty() && parse.info.alpn.empty());
  }
  return parse;
}

TunnelProtocol checked_classify(std::string_view input) {
  const TunnelProtocol protocol = openshell::proxy::classify_tunnel_bytes(input);
  if (input.size() >= kTunnelSniffBytes) require(protocol != TunnelProtocol::kNeedMore);
  if (input.empty()) require(protocol == TunnelProtocol::kNeedMore);
  return protocol;
}

// Wraps `body` as a ClientHello handshake message in records of `fragment` payload bytes.
std::string frame(std::string_view body, size_t fragment) {
  std::string message = {'\x01', static_cast<char>(body.size() >> 16),
                         static_cast<char>(body.size() >> 8), static_cast<char>(body.size())};
  message.append(body);
  std::string out;
  for (size_t at = 0; at < message.size(); at += fragment) {
    const size_t piece = std::min(fragment, message.size() - at);
    out += {'\x16', '\x03', '\x01', static_cast<char>(piece >> 8), static_cast<char>(piece)};
    out.append(message, at, piece);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ClientHelloParse whole = checked_parse(input);
  const TunnelProtocol protocol = checked_classify(input);

  for (size_t length = 0; length <= std::min(size, kPrefixSweepBytes); ++length) {
    const std::string_view prefix = input.substr(0, length);
    const ClientHelloParse parse = checked_parse(prefix);
    if (parse.status == ClientHelloStatus::kInvalid) {
      require(whole.status == ClientHelloStatus::kInvalid);
    } else if (parse.status == ClientHelloStatus::kComplete) {
      require(whole.status == ClientHelloStatus::kComplete && same_info(parse, whole));
    } else if (whole.status == ClientHelloStatus::kComplete) {
      require(parse.needed <= size);  // the hint is a lower bound
    }
    const TunnelProtocol prefix_protocol = checked_classify(prefix);
    if (prefix_protocol != TunnelProtocol::kNeedMore) require(prefix_protocol == protocol);
    // Whatever the classifier does not call TLS, the parser refuses (and vice versa from 3 bytes).
    if (prefix_protocol == TunnelProtocol::kTls) {
      require(parse.status != ClientHelloStatus::kInvalid || length >= 5);
    } else if (prefix_protocol != TunnelProtocol::kNeedMore) {
      require(parse.status == ClientHelloStatus::kInvalid);
    }
  }

  // The input after a single record's headers (9 bytes) is the ClientHello body for the seeds;
  // re-framed, mutations reach the body parser even when they break the record lengths.
  const std::string_view body = input.substr(std::min<size_t>(size, 9));
  if (body.size() < 0x10000) {
    const ClientHelloParse one_record = checked_parse(frame(body, 16384));
    require(one_record.status != ClientHelloStatus::kNeedMore);
    const size_t fragment = size == 0 ? 1 : 1 + (size_t{data[0]} * 7 + size) % 300;
    const std::string split = frame(body, fragment);
    if (split.size() <= kMaxClientHelloBytes) {  // small fragments can push it past the cap
      const ClientHelloParse reframed = checked_parse(split);
      require(reframed.status == one_record.status && same_info(reframed, one_record));
      if (reframed.status == ClientHelloStatus::kComplete) {
        require(checked_parse(std::string_view(split).substr(0, split.size() - 1)).status ==
                ClientHelloStatus::kNeedMore);
      }
    }
  }
  return 0;
}
