// libFuzzer target for the PROXY protocol v2 decoder. Invariants: no crash, consumed <= size and
// <= the bound, a complete header's prefixes all need more bytes, a refusal stays a refusal when
// bytes are appended, and a decoded header re-encodes (with a key) to one that decodes the same.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "openshell/core/proxy_protocol.hpp"

namespace {

using openshell::core::decode_proxy_header;
using openshell::core::ProxyDecodeOptions;
using openshell::core::ProxyDecodeResult;
using Status = ProxyDecodeResult::Status;

// abort() rather than assert(): the invariant must hold in NDEBUG builds too.
void require(bool ok) {
  if (!ok) std::abort();
}

constexpr int64_t kNow = 1'790'000'000'000;
const std::vector<uint8_t> kKey = {'f', 'u', 'z', 'z'};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  ProxyDecodeOptions keyed;
  keyed.key = kKey;
  keyed.now_ms = kNow;

  const ProxyDecodeResult plain = decode_proxy_header(input);
  const ProxyDecodeResult checked = decode_proxy_header(input, keyed);
  // The key only adds checks: it never turns a refusal or an incomplete header into a success.
  require(checked.status != Status::kComplete || plain.status == Status::kComplete);
  require(plain.status == Status::kNeedMore ? checked.status == Status::kNeedMore : true);

  if (plain.status == Status::kInvalid) {
    require(!plain.reason.empty());
    // Refusals are final: more bytes cannot make the header acceptable.
    std::vector<uint8_t> longer(input.begin(), input.end());
    longer.push_back(0);
    require(decode_proxy_header(longer).status == Status::kInvalid);
    return 0;
  }
  if (plain.status == Status::kNeedMore) {
    require(size < openshell::core::kProxyV2MaxHeaderSize);
    return 0;
  }
  require(plain.consumed >= openshell::core::kProxyV2FixedSize && plain.consumed <= size &&
          plain.consumed <= openshell::core::kProxyV2MaxHeaderSize);
  // Incremental feeding: a few prefixes of a complete header (all of them would be quadratic).
  for (const std::size_t n :
       {std::size_t{0}, std::size_t{13}, plain.consumed / 2, plain.consumed - 1}) {
    if (n < plain.consumed)
      require(decode_proxy_header(input.first(n)).status == Status::kNeedMore);
  }

  // Re-encode what was understood, authenticated this time, and decode it back.
  openshell::core::ProxyHeader header = plain.header;
  header.timestamp_ms = static_cast<uint64_t>(kNow);
  auto wire = openshell::core::encode_proxy_header(header, kKey);
  require(wire.ok());
  const ProxyDecodeResult again = decode_proxy_header(*wire, keyed);
  require(again.status == Status::kComplete && again.consumed == wire->size());
  require(again.header.authenticated);
  require(again.header.family == header.family && again.header.source == header.source &&
          again.header.destination == header.destination && again.header.pid == header.pid &&
          again.header.exe_path == header.exe_path && again.header.exe_sha256 == header.exe_sha256);
  return 0;
}
