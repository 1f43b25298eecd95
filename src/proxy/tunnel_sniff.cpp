// Tunnel protocol sniffing and ClientHello inspection (spec §2.8 step 15). Every length read
// from the wire is checked against the bytes its enclosing structure has left (RFC 8446 §4.1.2,
// RFC 6066 §3, RFC 7301 §3.1), so hostile input can only yield kInvalid, never an overread.
#include "openshell/proxy/tunnel_sniff.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace openshell::proxy {
namespace {

constexpr std::string_view kH2cPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static_assert(kH2cPreface.size() == kTunnelSniffBytes);

// Spec §2.8 step 15; the trailing space keeps "GETTER" or "POSTAL" from counting as HTTP.
constexpr std::array<std::string_view, 9> kMethodPrefixes = {
    "GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "PATCH ", "OPTIONS ", "CONNECT ", "TRACE ",
};

constexpr uint8_t kRecordHandshake = 0x16;
constexpr uint8_t kHandshakeClientHello = 0x01;
constexpr size_t kRecordHeaderBytes = 5;
constexpr size_t kHandshakeHeaderBytes = 4;
// TLSPlaintext.length limit (RFC 8446 §5.1); larger is a record_overflow alert.
constexpr size_t kMaxRecordPayload = 16384;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint8_t kNameTypeHostName = 0;
// DNS name limit; OpenSSL rejects longer SNI names too (TLSEXT_MAXLEN_host_name).
constexpr size_t kMaxHostNameBytes = 255;

// Both record checks the dispatcher applies to the first bytes: a TLS 1.x (or SSL 3) record.
bool record_version_ok(uint8_t major, uint8_t minor) {
  return major == 0x03 && minor <= 0x04;
}

// Reads big-endian integers and length-prefixed vectors, failing (never overreading) when the
// enclosing view has too few bytes left.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  bool empty() const { return bytes_.empty(); }

  bool integer(size_t width, size_t& value) {
    if (bytes_.size() < width) return false;
    value = 0;
    for (size_t i = 0; i < width; ++i)
      value = value << 8 | static_cast<uint8_t>(bytes_[i]);
    bytes_.remove_prefix(width);
    return true;
  }

  bool skip(size_t count) {
    std::string_view ignored;
    return take(count, ignored);
  }

  bool take(size_t count, std::string_view& out) {
    if (bytes_.size() < count) return false;
    out = bytes_.substr(0, count);
    bytes_.remove_prefix(count);
    return true;
  }

  // A vector<floor..2^(8*width)-1> with a `width`-byte length prefix.
  bool vector(size_t width, size_t floor, std::string_view& out) {
    size_t length = 0;
    return integer(width, length) && length >= floor && take(length, out);
  }

 private:
  std::string_view bytes_;
};

// ServerNameList (RFC 6066 §3): at most one host_name, non-empty, no NUL or control bytes
// (the name reaches logs and host comparisons).
bool parse_server_name(std::string_view data, ClientHelloInfo& info) {
  Reader outer(data);
  std::string_view list;
  if (!outer.vector(2, 1, list) || !outer.empty()) return false;
  Reader entries(list);
  bool seen_host_name = false;
  while (!entries.empty()) {
    size_t name_type = 0;
    std::string_view name;
    if (!entries.integer(1, name_type) || !entries.vector(2, 1, name)) return false;
    // Unknown name types are skipped, as mbedTLS (which terminates these connections) does.
    if (name_type != kNameTypeHostName) continue;
    if (seen_host_name || name.size() > kMaxHostNameBytes) return false;
    const bool has_control = std::any_of(name.begin(), name.end(), [](char c) {
      const auto byte = static_cast<uint8_t>(c);
      return byte < 0x20 || byte == 0x7f;
    });
    if (has_control) return false;
    info.server_name = std::string(name);
    seen_host_name = true;
  }
  return true;
}

// ProtocolNameList (RFC 7301 §3.1): non-empty list of non-empty names.
bool parse_alpn(std::string_view data, ClientHelloInfo& info) {
  Reader outer(data);
  std::string_view list;
  if (!outer.vector(2, 2, list) || !outer.empty()) return false;
  Reader names(list);
  while (!names.empty()) {
    std::string_view name;
    if (!names.vector(1, 1, name)) return false;
    info.alpn.emplace_back(name);
  }
  return true;
}

// The ClientHello body (after the 4-byte handshake header), RFC 8446 §4.1.2.
bool parse_client_hello_body(std::string_view body, ClientHelloInfo& info) {
  Reader reader(body);
  std::string_view session_id;
  std::string_view cipher_suites;
  std::string_view compression_methods;
  if (!reader.skip(2 + 32) ||  // legacy_version, random
      !reader.vector(1, 0, session_id) || session_id.size() > 32 ||
      !reader.vector(2, 2, cipher_suites) || cipher_suites.size() % 2 != 0 ||
      !reader.vector(1, 1, compression_methods)) {
    return false;
  }
  if (reader.empty()) return true;  // extensions are optional before TLS 1.3
  std::string_view extensions;
  if (!reader.vector(2, 0, extensions) || !reader.empty()) return false;

  Reader entries(extensions);
  std::vector<uint16_t> types;
  while (!entries.empty()) {
    size_t type = 0;
    std::string_view data;
    if (!entries.integer(2, type) || !entries.vector(2, 0, data)) return false;
    types.push_back(static_cast<uint16_t>(type));
    if (type == kExtServerName && !parse_server_name(data, info)) return false;
    if (type == kExtAlpn && !parse_alpn(data, info)) return false;
  }
  // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type". A duplicate
  // could also show one SNI or ALPN to us and another to whoever parses the hello next.
  std::sort(types.begin(), types.end());
  return std::adjacent_find(types.begin(), types.end()) == types.end();
}

ClientHelloParse invalid() {
  return {ClientHelloStatus::kInvalid, {}, 0};
}

// Input needed to carry `payload` more handshake bytes: records hold at most 2^14 bytes each.
size_t framed(size_t payload) {
  return payload + kRecordHeaderBytes * ((payload + kMaxRecordPayload - 1) / kMaxRecordPayload);
}

ClientHelloParse need_more(size_t at_least) {
  if (at_least > kMaxClientHelloBytes) return invalid();
  return {ClientHelloStatus::kNeedMore, {}, at_least};
}

}  // namespace

TunnelProtocol classify_tunnel_bytes(std::string_view first_bytes) {
  if (first_bytes.empty()) return TunnelProtocol::kNeedMore;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(first_bytes[i]); };
  if (byte(0) == kRecordHandshake) {
    if (first_bytes.size() >= 2 && byte(1) != 0x03) return TunnelProtocol::kUnknown;
    if (first_bytes.size() < 3) return TunnelProtocol::kNeedMore;
    return record_version_ok(byte(1), byte(2)) ? TunnelProtocol::kTls : TunnelProtocol::kUnknown;
  }
  // A pattern either matches in full, or the input is a proper prefix of it and may still.
  bool partial = false;
  for (const std::string_view method : kMethodPrefixes) {
    if (first_bytes.starts_with(method)) return TunnelProtocol::kHttp;
    partial = partial || method.starts_with(first_bytes);
  }
  if (first_bytes.starts_with(kH2cPreface)) return TunnelProtocol::kH2cPreface;
  partial = partial || kH2cPreface.starts_with(first_bytes);
  // Unreachable today (every pattern fits in kTunnelSniffBytes); keeps the caller's bound true.
  if (partial && first_bytes.size() < kTunnelSniffBytes) return TunnelProtocol::kNeedMore;
  return TunnelProtocol::kUnknown;
}

bool ClientHelloInfo::offers_http11() const {
  return alpn.empty() || std::find(alpn.begin(), alpn.end(), "http/1.1") != alpn.end();
}

ClientHelloParse parse_client_hello(std::string_view bytes) {
  // Nothing past the cap is ever looked at; a hello needing more is refused by need_more().
  bytes = bytes.substr(0, std::min(bytes.size(), kMaxClientHelloBytes));
  std::string handshake;    // reassembled handshake bytes, from the records read so far
  size_t message_size = 0;  // handshake header + body, 0 until the header is in
  size_t offset = 0;        // start of the current record
  while (true) {
    // Check what is there of the record header, so junk fails fast instead of waiting.
    const std::string_view header = bytes.substr(offset, kRecordHeaderBytes);
    const auto header_byte = [&](size_t i) { return static_cast<uint8_t>(header[i]); };
    if (!header.empty() && header_byte(0) != kRecordHandshake) return invalid();
    if (header.size() >= 2 && header_byte(1) != 0x03) return invalid();
    if (header.size() >= 3 && !record_version_ok(header_byte(1), header_byte(2))) return invalid();
    // Bytes of the message still missing: at least the rest of the handshake header before the
    // length is known. Zero-length handshake records are not allowed (RFC 8446 §5.1).
    const size_t message_left = message_size != 0 ? message_size - handshake.size()
                                                  : kHandshakeHeaderBytes - handshake.size();
    if (header.size() < kRecordHeaderBytes) {
      return need_more(offset + framed(message_left));
    }
    const size_t payload_size = size_t{header_byte(3)} << 8 | header_byte(4);
    if (payload_size == 0 || payload_size > kMaxRecordPayload) return invalid();
    const size_t record_end = offset + kRecordHeaderBytes + payload_size;
    // A ClientHello ends on a record boundary: in TLS 1.3 it precedes a key change (early
    // data keys), and a TLS 1.2 client sends nothing else before the ServerHello.
    if (message_size != 0 && payload_size > message_left) return invalid();

    const size_t handshake_before = handshake.size();
    handshake.append(bytes.substr(offset + kRecordHeaderBytes, payload_size));
    if (!handshake.empty() && static_cast<uint8_t>(handshake[0]) != kHandshakeClientHello) {
      return invalid();
    }
    if (message_size == 0 && handshake.size() >= kHandshakeHeaderBytes) {
      const auto hs_byte = [&](size_t i) { return size_t{static_cast<uint8_t>(handshake[i])}; };
      message_size = kHandshakeHeaderBytes + (hs_byte(1) << 16 | hs_byte(2) << 8 | hs_byte(3));
      if (handshake_before + payload_size > message_size) return invalid();
    }
    if (record_end > bytes.size()) {
      // This record is incomplete; if the message outlasts it, more records must follow.
      const size_t carried = handshake_before + payload_size;
      return need_more(record_end + framed(message_size > carried ? message_size - carried : 0));
    }
    if (message_size != 0 && handshake.size() == message_size) {
      ClientHelloParse result;
      if (!parse_client_hello_body(std::string_view(handshake).substr(kHandshakeHeaderBytes),
                                   result.info)) {
        return invalid();
      }
      result.status = ClientHelloStatus::kComplete;
      return result;
    }
    offset = record_end;
  }
}

}  // namespace openshell::proxy
