// libFuzzer target for the chunked framer and the Content-Length counter. Invariants: feeding in
// any split equals one-shot (status, error, consumed, decoded data), consumed <= size, and the
// decoded payload never exceeds the framed bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "openshell/proxy/chunked.hpp"

namespace {

using openshell::proxy::BodyStatus;
using openshell::proxy::ChunkedFramer;

void require(bool ok) {
  if (!ok) std::abort();
}

// Length and FNV-1a hash of everything delivered, so splits can be compared without storing it.
class HashingSink : public openshell::proxy::ChunkDataSink {
 public:
  void on_chunk_data(std::span<const char> data) override {
    for (const char c : data) {
      hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    }
    bytes += data.size();
  }
  uint64_t hash = 1469598103934665603ULL;
  uint64_t bytes = 0;
};

struct Run {
  BodyStatus status = BodyStatus::kNeedMore;
  size_t consumed = 0;
  openshell::proxy::ChunkedError error = openshell::proxy::ChunkedError::kInvalidChunkSize;
  uint64_t hash = 0;
  uint64_t payload = 0;
};

template <class PieceFn>
Run run(std::string_view input, PieceFn piece_for) {
  ChunkedFramer framer;
  HashingSink sink;
  Run out;
  size_t offset = 0;
  while (offset < input.size() && framer.status() == BodyStatus::kNeedMore) {
    size_t piece = piece_for(offset);
    if (piece == 0 || piece > input.size() - offset) piece = input.size() - offset;
    const auto progress = framer.feed(input.substr(offset, piece), &sink);
    require(progress.consumed <= piece);
    require(progress.status == BodyStatus::kNeedMore ? progress.consumed == piece : true);
    out.consumed += progress.consumed;
    offset += piece;
  }
  out.status = framer.status();
  out.error = framer.error();
  out.hash = sink.hash;
  out.payload = framer.payload_bytes();
  require(sink.bytes == framer.payload_bytes());
  require(framer.wire_bytes() == out.consumed);
  require(framer.payload_bytes() <= framer.wire_bytes());
  if (out.status == BodyStatus::kComplete) {
    // A complete message takes nothing more.
    require(framer.feed(input.substr(0, 1), &sink).consumed == 0);
  }
  return out;
}

void require_same(const Run& a, const Run& b) {
  require(a.status == b.status && a.consumed == b.consumed && a.payload == b.payload &&
          a.hash == b.hash);
  if (a.status == BodyStatus::kError) require(a.error == b.error);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const Run one_shot = run(input, [](size_t) { return size_t{0}; });
  const Run bytewise = run(input, [](size_t) { return size_t{1}; });
  const Run pieces = run(input, [input](size_t offset) {
    return 1 + (static_cast<unsigned char>(input[offset]) * 17U + offset) % 11;
  });
  require_same(one_shot, bytewise);
  require_same(one_shot, pieces);
  require(one_shot.consumed <= size);
  if (one_shot.status == BodyStatus::kNeedMore) require(one_shot.consumed == size);
  if (one_shot.status == BodyStatus::kComplete) require(one_shot.consumed >= 5);  // "0\r\n\r\n"

  // Content-Length counter: the length comes from the first two bytes.
  if (size >= 2) {
    const uint64_t length = static_cast<uint64_t>(data[0]) << 8 | data[1];
    openshell::proxy::FixedLengthBody body(length);
    size_t consumed = 0;
    for (size_t offset = 2; offset < size; offset += 7) {
      consumed += body.feed(input.substr(offset, 7)).consumed;
    }
    require(consumed == std::min<uint64_t>(length, size - 2));
    require(body.done() == (consumed == length));
  }
  return 0;
}
