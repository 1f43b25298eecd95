// PROXY protocol v2 encoder and decoder with the identity TLVs and their HMAC (see the header).
#include "openshell/core/proxy_protocol.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <string_view>

#include "openshell/core/clock.hpp"

namespace openshell::core {
namespace {

using Status = ProxyDecodeResult::Status;

constexpr uint8_t kVersionCommandProxy = 0x21;  // version 2, command PROXY
constexpr std::size_t kTlvHeaderSize = 3;       // type, 16-bit length
constexpr std::size_t kHmacSize = 32;

std::size_t address_block_size(ProxyFamily family) {
  switch (family) {
    case ProxyFamily::kTcp4:
      return 12;  // two IPv4 addresses, two ports
    case ProxyFamily::kTcp6:
      return 36;  // two IPv6 addresses, two ports
    case ProxyFamily::kUnspec:
      return 0;
  }
  return 0;
}

std::optional<ProxyFamily> family_from_byte(uint8_t byte) {
  switch (byte) {
    case 0x00:
      return ProxyFamily::kUnspec;
    case 0x11:
      return ProxyFamily::kTcp4;
    case 0x21:
      return ProxyFamily::kTcp6;
    default:
      return std::nullopt;
  }
}

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) and no NUL: the path
// ends up in JSON log lines and policy matching, where either would be trouble.
bool valid_path_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<uint8_t>(text[i]);
    if (lead == 0) return false;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    // Continuation bytes, payload bits of the lead byte, smallest code point for this length.
    std::size_t extra = 0;
    uint32_t min = 0;
    if ((lead & 0xE0) == 0xC0) {
      extra = 1;
      min = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2;
      min = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3;
      min = 0x10000;
    } else {
      return false;
    }
    uint32_t code = lead & (0x3Fu >> extra);
    if (text.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<uint8_t>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3Fu);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

template <class T>
void put_be(std::vector<uint8_t>& out, T value) {
  for (int shift = static_cast<int>(sizeof(T) * 8) - 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<uint8_t>(value >> shift));
  }
}

template <class T>
T get_be(const uint8_t* data) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    value = static_cast<T>((value << 8) | data[i]);
  return value;
}

void put_tlv(std::vector<uint8_t>& out, ProxyTlv type, std::span<const uint8_t> value) {
  out.push_back(static_cast<uint8_t>(type));
  put_be<uint16_t>(out, static_cast<uint16_t>(value.size()));
  out.insert(out.end(), value.begin(), value.end());
}

// HMAC-SHA256 of `data` (the whole header, HMAC value already zeroed).
bool hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data, uint8_t* out) {
  if (key.size() > static_cast<std::size_t>(INT_MAX)) return false;
  unsigned int out_size = 0;
  return HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out,
              &out_size) != nullptr &&
         out_size == kHmacSize;
}

ProxyDecodeResult invalid(std::string reason) {
  ProxyDecodeResult result;
  result.status = Status::kInvalid;
  result.reason = std::move(reason);
  return result;
}

// NUL-terminated exe paths; nullopt when any is empty, unterminated or invalid, or too many.
std::optional<std::vector<std::string>> parse_ancestors(std::string_view text) {
  if (text.empty() || text.size() > kProxyV2MaxAncestorsSize || text.back() != '\0') {
    return std::nullopt;
  }
  std::vector<std::string> paths;
  while (!text.empty()) {
    const std::size_t end = text.find('\0');
    const std::string_view path = text.substr(0, end);
    if (path.empty() || path.size() > kProxyV2MaxExePathSize || !valid_path_text(path) ||
        paths.size() == kProxyV2MaxAncestors) {
      return std::nullopt;
    }
    paths.emplace_back(path);
    text.remove_prefix(end + 1);
  }
  return paths;
}

std::string hex_byte(uint8_t byte) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  return std::string{'0', 'x', kDigits[byte >> 4], kDigits[byte & 0xF]};
}

}  // namespace

Result<std::vector<uint8_t>> encode_proxy_header(const ProxyHeader& header,
                                                 std::span<const uint8_t> key) {
  if (header.exe_path) {
    if (header.exe_path->empty() || header.exe_path->size() > kProxyV2MaxExePathSize) {
      return make_error(
          Errc::kInvalidArgument,
          "PROXY header: exe path must be 1.." + std::to_string(kProxyV2MaxExePathSize) + " bytes");
    }
    if (!valid_path_text(*header.exe_path)) {
      return make_error(Errc::kInvalidArgument,
                        "PROXY header: exe path is not valid UTF-8 (or contains NUL)");
    }
  }
  if (!key.empty() && !header.timestamp_ms) {
    return make_error(Errc::kInvalidArgument,
                      "PROXY header: an authenticated header needs a timestamp");
  }
  std::vector<uint8_t> ancestors;
  for (const std::string& path : header.ancestors) {
    if (path.empty() || path.size() > kProxyV2MaxExePathSize || !valid_path_text(path)) {
      return make_error(Errc::kInvalidArgument,
                        "PROXY header: an ancestor path is empty, too long or not UTF-8");
    }
    const std::size_t count =
        static_cast<std::size_t>(std::count(ancestors.begin(), ancestors.end(), uint8_t{0}));
    if (count == kProxyV2MaxAncestors ||
        ancestors.size() + path.size() + 1 > kProxyV2MaxAncestorsSize) {
      break;
    }
    ancestors.insert(ancestors.end(), path.begin(), path.end());
    ancestors.push_back(0);
  }

  std::vector<uint8_t> out(kProxyV2Signature.begin(), kProxyV2Signature.end());
  out.push_back(kVersionCommandProxy);
  out.push_back(static_cast<uint8_t>(header.family));
  put_be<uint16_t>(out, 0);  // length, patched below
  const std::size_t ip_size = header.family == ProxyFamily::kTcp6 ? 16 : 4;
  if (header.family != ProxyFamily::kUnspec) {
    out.insert(out.end(), header.source.ip.begin(), header.source.ip.begin() + ip_size);
    out.insert(out.end(), header.destination.ip.begin(), header.destination.ip.begin() + ip_size);
    put_be<uint16_t>(out, header.source.port);
    put_be<uint16_t>(out, header.destination.port);
  }
  std::vector<uint8_t> scratch;
  if (header.pid) {
    put_be(scratch, *header.pid);
    put_tlv(out, ProxyTlv::kPid, scratch);
  }
  if (header.exe_path) {
    const auto* data = reinterpret_cast<const uint8_t*>(header.exe_path->data());
    put_tlv(out, ProxyTlv::kExePath, {data, header.exe_path->size()});
  }
  if (header.exe_sha256) put_tlv(out, ProxyTlv::kExeSha256, *header.exe_sha256);
  if (!ancestors.empty()) put_tlv(out, ProxyTlv::kAncestors, ancestors);
  if (header.timestamp_ms) {
    scratch.clear();
    put_be(scratch, *header.timestamp_ms);
    put_tlv(out, ProxyTlv::kTimestampMs, scratch);
  }
  std::size_t hmac_offset = 0;
  if (!key.empty()) {
    const std::array<uint8_t, kHmacSize> zeros{};
    put_tlv(out, ProxyTlv::kHmac, zeros);
    hmac_offset = out.size() - kHmacSize;
  }
  // Cannot trip with the fields above (~4.3 KiB at most); kept so a new TLV cannot break the
  // receiver's bound silently.
  if (out.size() > kProxyV2MaxHeaderSize) {
    return make_error(Errc::kLimit, "PROXY header: larger than " +
                                        std::to_string(kProxyV2MaxHeaderSize) + " bytes");
  }
  const auto length = static_cast<uint16_t>(out.size() - kProxyV2FixedSize);
  out[14] = static_cast<uint8_t>(length >> 8);
  out[15] = static_cast<uint8_t>(length);
  if (!key.empty() && !hmac_sha256(key, out, out.data() + hmac_offset)) {
    return make_error(Errc::kInternal, "PROXY header: HMAC-SHA256 failed");
  }
  return out;
}

ProxyDecodeResult decode_proxy_header(std::span<const uint8_t> buffered,
                                      const ProxyDecodeOptions& options) {
  const std::size_t size = buffered.size();
  const std::size_t signature_seen = std::min(size, kProxyV2Signature.size());
  if (!std::equal(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(signature_seen),
                  kProxyV2Signature.begin())) {
    return invalid("not a PROXY protocol v2 header (signature mismatch)");
  }
  if (size < 13) return {};
  if (buffered[12] != kVersionCommandProxy) {
    return invalid("unsupported PROXY version/command " + hex_byte(buffered[12]) +
                   " (only v2 PROXY, 0x21)");
  }
  if (size < 14) return {};
  const std::optional<ProxyFamily> family = family_from_byte(buffered[13]);
  if (!family) {
    return invalid("unsupported PROXY address family " + hex_byte(buffered[13]) +
                   " (only TCP4, TCP6, UNSPEC)");
  }
  if (size < kProxyV2FixedSize) return {};
  const std::size_t total = kProxyV2FixedSize + get_be<uint16_t>(&buffered[14]);
  if (total > kProxyV2MaxHeaderSize) {
    return invalid("PROXY header of " + std::to_string(total) + " bytes exceeds the limit of " +
                   std::to_string(kProxyV2MaxHeaderSize));
  }
  const std::size_t address_size = address_block_size(*family);
  if (total - kProxyV2FixedSize < address_size) {
    return invalid("PROXY header length too small for its address family");
  }
  if (size < total) return {};

  ProxyDecodeResult result;
  ProxyHeader& header = result.header;
  header.family = *family;
  const uint8_t* p = buffered.data() + kProxyV2FixedSize;
  if (*family != ProxyFamily::kUnspec) {
    const std::size_t ip_size = *family == ProxyFamily::kTcp6 ? 16 : 4;
    std::copy_n(p, ip_size, header.source.ip.begin());
    std::copy_n(p + ip_size, ip_size, header.destination.ip.begin());
    header.source.port = get_be<uint16_t>(p + 2 * ip_size);
    header.destination.port = get_be<uint16_t>(p + 2 * ip_size + 2);
  }

  std::optional<std::size_t> hmac_offset;
  bool seen_ancestors = false;
  std::size_t offset = kProxyV2FixedSize + address_size;
  while (offset < total) {
    if (total - offset < kTlvHeaderSize) return invalid("truncated TLV header");
    const uint8_t type = buffered[offset];
    const std::size_t length = get_be<uint16_t>(&buffered[offset + 1]);
    const std::size_t value_offset = offset + kTlvHeaderSize;
    if (length > total - value_offset) {
      return invalid("TLV " + hex_byte(type) + " runs past the end of the header");
    }
    const uint8_t* value = buffered.data() + value_offset;
    auto fixed = [&](std::size_t want, bool present) -> std::optional<std::string> {
      if (present) return "duplicate TLV " + hex_byte(type);
      if (length != want) {
        return "TLV " + hex_byte(type) + " has length " + std::to_string(length) + ", expected " +
               std::to_string(want);
      }
      return std::nullopt;
    };
    std::optional<std::string> problem;
    switch (type) {
      case static_cast<uint8_t>(ProxyTlv::kPid):
        problem = fixed(4, header.pid.has_value());
        if (!problem) header.pid = get_be<uint32_t>(value);
        break;
      case static_cast<uint8_t>(ProxyTlv::kExePath): {
        const std::string_view text(reinterpret_cast<const char*>(value), length);
        if (header.exe_path) {
          problem = "duplicate TLV " + hex_byte(type);
        } else if (length == 0 || length > kProxyV2MaxExePathSize || !valid_path_text(text)) {
          problem = "exe path TLV is empty, too long or not UTF-8";
        } else {
          header.exe_path = std::string(text);
        }
        break;
      }
      case static_cast<uint8_t>(ProxyTlv::kExeSha256):
        problem = fixed(32, header.exe_sha256.has_value());
        if (!problem) std::copy_n(value, 32, header.exe_sha256.emplace().begin());
        break;
      case static_cast<uint8_t>(ProxyTlv::kTimestampMs):
        problem = fixed(8, header.timestamp_ms.has_value());
        if (!problem) header.timestamp_ms = get_be<uint64_t>(value);
        break;
      case static_cast<uint8_t>(ProxyTlv::kAncestors): {
        const std::string_view text(reinterpret_cast<const char*>(value), length);
        if (seen_ancestors) {
          problem = "duplicate TLV " + hex_byte(type);
        } else if (auto parsed = parse_ancestors(text)) {
          header.ancestors = std::move(*parsed);
        } else {
          problem = "ancestors TLV is malformed (empty, unterminated, too long or not UTF-8)";
        }
        seen_ancestors = true;
        break;
      }
      case static_cast<uint8_t>(ProxyTlv::kHmac):
        problem = fixed(kHmacSize, hmac_offset.has_value());
        if (!problem) hmac_offset = value_offset;
        break;
      default:
        break;  // another application's TLV or NOOP padding: skipped
    }
    if (problem) return invalid(std::move(*problem));
    offset = value_offset + length;
  }

  header.has_hmac = hmac_offset.has_value();
  if (!options.key.empty()) {
    if (!hmac_offset) return invalid("PROXY header carries no HMAC but an identity key is set");
    std::array<uint8_t, kProxyV2MaxHeaderSize> copy;
    std::copy_n(buffered.begin(), total, copy.begin());
    std::fill_n(copy.begin() + static_cast<std::ptrdiff_t>(*hmac_offset), kHmacSize, 0);
    std::array<uint8_t, kHmacSize> expected;
    if (!hmac_sha256(options.key, {copy.data(), total}, expected.data())) {
      return invalid("HMAC-SHA256 computation failed");
    }
    // Constant time, so response timing does not reveal how much of a forged MAC was right.
    if (CRYPTO_memcmp(expected.data(), buffered.data() + *hmac_offset, kHmacSize) != 0) {
      return invalid("PROXY header HMAC mismatch (wrong identity key or altered header)");
    }
    if (!header.timestamp_ms) return invalid("authenticated PROXY header carries no timestamp");
    const int64_t now = options.now_ms ? *options.now_ms : now_ms();
    // Compared in unsigned space: a hostile u64 timestamp must not overflow a signed difference.
    const auto now_u = static_cast<uint64_t>(std::max<int64_t>(now, 0));
    const uint64_t skew =
        *header.timestamp_ms > now_u ? *header.timestamp_ms - now_u : now_u - *header.timestamp_ms;
    if (skew > static_cast<uint64_t>(options.max_skew_ms)) {
      return invalid("PROXY header timestamp is " + std::to_string(skew / 1000) +
                     " s away from now (max " + std::to_string(options.max_skew_ms / 1000) +
                     " s): replayed header or clock skew");
    }
    header.authenticated = true;
  }
  result.status = Status::kComplete;
  result.consumed = total;
  return result;
}

Result<std::string> read_identity_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::kIo, path + ": cannot read the identity key file");
  // A key file is a few dozen bytes; the bound keeps a mistaken path (a log) from being slurped.
  constexpr size_t kMaxKeyFile = 4096;
  std::string key(kMaxKeyFile + 1, '\0');
  in.read(key.data(), static_cast<std::streamsize>(key.size()));
  key.resize(static_cast<size_t>(in.gcount()));
  if (key.size() > kMaxKeyFile) {
    return make_error(Errc::kInvalidArgument, path + ": identity key file larger than 4 KiB");
  }
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r'))
    key.pop_back();
  if (key.size() < 16) {
    return make_error(Errc::kInvalidArgument,
                      path + ": identity key too short (" + std::to_string(key.size()) +
                          " bytes; at least 16, e.g. `head -c 32 /dev/urandom | base64 > FILE`)");
  }
  return key;
}

}  // namespace openshell::core
