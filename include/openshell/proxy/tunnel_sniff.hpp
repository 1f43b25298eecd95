// Sans-I/O look at the first bytes a client sends inside a CONNECT tunnel (spec §2.8 step 15):
// which protocol it speaks, and for TLS, what its ClientHello offers (SNI, ALPN).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace openshell::proxy {

// The dispatcher peeks at most this many bytes before deciding (spec §2.8 step 15): the h2c
// preface is the longest pattern (24 bytes), so every pattern is decidable within it.
inline constexpr size_t kTunnelSniffBytes = 24;

enum class TunnelProtocol {
  kNeedMore,    // consistent with some pattern so far; wait for more bytes
  kTls,         // TLS handshake record: 0x16 0x03 <=0x04
  kHttp,        // HTTP/1.x method prefix such as "GET "
  kH2cPreface,  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
  kUnknown,     // anything else, also kNeedMore at kTunnelSniffBytes or more
};

TunnelProtocol classify_tunnel_bytes(std::string_view first_bytes);

// Input bound for a ClientHello with its record headers. Real ones are 0.3–2 KB (up to ~1.8 KB
// with post-quantum key shares); the cap keeps a hostile client from making the proxy buffer
// the 16 MiB a handshake length field can express.
inline constexpr size_t kMaxClientHelloBytes = size_t{64} * 1024;

struct ClientHelloInfo {
  std::string server_name;        // SNI host_name, empty if absent
  std::vector<std::string> alpn;  // offered protocols in order, empty if no ALPN extension
  // No ALPN means HTTP/1.1 by default; a client offering only "h2" cannot talk HTTP/1.1 to us.
  bool offers_http11() const;
};

enum class ClientHelloStatus { kNeedMore, kComplete, kInvalid };

struct ClientHelloParse {
  ClientHelloStatus status = ClientHelloStatus::kNeedMore;
  ClientHelloInfo info;  // filled on kComplete
  // On kNeedMore: a lower bound on the total input size (from the start) that can complete the
  // ClientHello, always more than the input given; 0 otherwise.
  size_t needed = 0;
};

// Parses the TLS handshake records at the start of `bytes` (type 0x16, reassembling a
// ClientHello fragmented over several records) up to the end of the ClientHello; any bytes
// after the record that completes it are ignored. kInvalid on anything malformed: another
// record or handshake type, a length outside its enclosing bound, a duplicate extension, an
// empty ALPN name, or more than kMaxClientHelloBytes needed. A prefix of a valid ClientHello is
// always kNeedMore.
ClientHelloParse parse_client_hello(std::string_view bytes);

}  // namespace openshell::proxy
