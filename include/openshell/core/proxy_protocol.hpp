// PROXY protocol v2 (haproxy's proxy-protocol.txt §2.2) with our identity TLVs: how `openshell
// run --network proxy:...` tells a remote proxy which process opened a connection (DESIGN.md
// "Network path inside a sandbox"). Sans-I/O: bytes in, bytes out.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::core {

// "\r\n\r\n\0\r\nQUIT\n": cannot start any HTTP or TLS stream, so a receiver tells at once.
inline constexpr std::array<uint8_t, 12> kProxyV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                              0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
// Signature, version/command, family, 16-bit length.
inline constexpr std::size_t kProxyV2FixedSize = 16;
// Our largest header is ~4.3 KiB (a 4096-byte exe path); the bound keeps a hostile sender from
// making the receiver buffer 64 KiB before it can say no.
inline constexpr std::size_t kProxyV2MaxHeaderSize = 8192;
// PATH_MAX: a longer path cannot be exec'd anyway.
inline constexpr std::size_t kProxyV2MaxExePathSize = 4096;
// Headers are written right after connect; a minute absorbs clock drift between nodes while a
// captured header cannot be replayed for long.
inline constexpr int64_t kProxyV2MaxSkewMs = 60'000;

// Custom TLV types, in the range the spec reserves for applications (0xE0-0xEF).
enum class ProxyTlv : uint8_t {
  kPid = 0xE0,          // u32, big-endian
  kExePath = 0xE1,      // UTF-8, 1..4096 bytes, no NUL
  kExeSha256 = 0xE2,    // 32 raw bytes
  kTimestampMs = 0xE3,  // u64, big-endian, Unix milliseconds
  kHmac = 0xE4,         // HMAC-SHA256 of the whole header with this value zeroed, 32 bytes
  kAncestors = 0xE5,    // the ancestors' exe paths, nearest first, each ended by a NUL
};

// The ancestors TLV's value is bounded so that a header with the longest exe path still fits
// kProxyV2MaxHeaderSize; the encoder drops the farthest ancestors that do not fit.
inline constexpr std::size_t kProxyV2MaxAncestorsSize = 2048;
inline constexpr std::size_t kProxyV2MaxAncestors = 64;

// Only TCP is carried (the sandbox listener is TCP); UNSPEC has no addresses.
enum class ProxyFamily : uint8_t { kUnspec = 0x00, kTcp4 = 0x11, kTcp6 = 0x21 };

struct ProxyAddress {
  std::array<uint8_t, 16> ip{};  // network byte order; kTcp4 uses ip[0..3]
  uint16_t port = 0;
  bool operator==(const ProxyAddress&) const = default;
};

using Sha256Digest = std::array<uint8_t, 32>;

struct ProxyHeader {
  ProxyFamily family = ProxyFamily::kUnspec;
  ProxyAddress source;       // the client, as the relay's listener saw it
  ProxyAddress destination;  // the address the client connected to
  // Identity TLVs; each is written only when set.
  std::optional<uint32_t> pid;
  std::optional<std::string> exe_path;
  std::optional<Sha256Digest> exe_sha256;
  std::optional<uint64_t> timestamp_ms;
  // Exe paths of the process's ancestors inside the sandbox, nearest first (the sandbox's own
  // init excluded); empty: none sent. Ancestor rules of a policy match against them.
  std::vector<std::string> ancestors;
  // Decoder output: an HMAC TLV was present and verified with the caller's key.
  bool authenticated = false;
  // Decoder output: an HMAC TLV was present (verified only when the caller gave a key). Lets a
  // receiver that trusts its transport still check a MAC the sender chose to add.
  bool has_hmac = false;
};

// The wire form. With a non-empty `key` an HMAC TLV is appended (then timestamp_ms is required,
// since the receiver rejects an authenticated header without one). Fails on an exe path or
// ancestor path that is empty, too long or not UTF-8. Ancestors past kProxyV2MaxAncestors or
// kProxyV2MaxAncestorsSize are left out, the farthest first: an ancestor rule then fails to
// match, which denies (the safe direction).
Result<std::vector<uint8_t>> encode_proxy_header(const ProxyHeader& header,
                                                 std::span<const uint8_t> key = {});

struct ProxyDecodeOptions {
  // Empty: no HMAC check (the transport is trusted, e.g. a unix socket), any HMAC TLV is ignored.
  // Otherwise the header must carry a valid HMAC and a timestamp within max_skew_ms of now.
  std::span<const uint8_t> key;
  std::optional<int64_t> now_ms;  // unset: the wall clock (tests pin it)
  int64_t max_skew_ms = kProxyV2MaxSkewMs;
};

struct ProxyDecodeResult {
  enum class Status : uint8_t { kNeedMore, kComplete, kInvalid };
  Status status = Status::kNeedMore;
  ProxyHeader header;        // kComplete
  std::size_t consumed = 0;  // kComplete: header bytes; the connection's payload follows them
  std::string reason;        // kInvalid: for the log line
};

// Decodes the header at the start of `buffered`. Incremental by re-reading the prefix: call
// again with more bytes after kNeedMore. A prefix that cannot become a valid header is kInvalid
// as early as possible (first wrong signature byte, unsupported version or family, oversize
// length), so a client that speaks something else is refused without waiting.
// Unknown TLVs are skipped (but covered by the HMAC); duplicated identity TLVs are kInvalid.
ProxyDecodeResult decode_proxy_header(std::span<const uint8_t> buffered,
                                      const ProxyDecodeOptions& options = {});

// The shared HMAC key both sides read from --identity-key-file: the file's bytes without a
// trailing newline (so `echo secret > file` works), at least 16 bytes. Errors name the file.
Result<std::string> read_identity_key_file(const std::string& path);

}  // namespace openshell::core
