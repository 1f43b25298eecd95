// Sans-I/O body framing for relays: where a chunked or Content-Length message body ends, so
// the relay forwards exactly one message and never a pipelined follow-on (spec §2.7, §2.10).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace openshell::proxy {

// A chunk-size line (size plus extensions) longer than this is refused: extensions are rare and
// short, and a relay must not scan an endless line without making progress.
inline constexpr size_t kMaxChunkLineBytes = 4096;
// Trailer section bound, the same as an in-tunnel request head (spec §8): trailers are headers.
inline constexpr size_t kMaxChunkTrailerBytes = 16384;
// Largest chunk accepted: keeps offsets inside int64 for every consumer.
inline constexpr uint64_t kMaxChunkSize = 0x7fff'ffff'ffff'ffffULL;

enum class ChunkedError {
  kInvalidChunkSize,  // empty or non-hex chunk size
  kChunkSizeOverflow,
  kChunkLineTooLong,       // > kMaxChunkLineBytes
  kInvalidChunkExtension,  // control byte in an extension
  kBadLineEnding,          // bare LF, or CR not followed by LF
  kMissingChunkCrlf,       // chunk data not followed by CRLF
  kInvalidTrailer,         // malformed trailer field line (incl. obs-fold)
  kTrailerTooLarge,        // > kMaxChunkTrailerBytes
};

std::string_view chunked_error_name(ChunkedError error);
std::string_view chunked_error_reason(ChunkedError error);  // a sentence for logs

enum class BodyStatus { kNeedMore, kComplete, kError };

struct BodyProgress {
  BodyStatus status = BodyStatus::kNeedMore;
  // Bytes of this call's input that belong to the message; forward exactly these. Anything after
  // them on kComplete is the next message. Unspecified on kError (forward nothing more).
  size_t consumed = 0;
};

// Receives the decoded chunk data, for consumers that need the payload (body rewriting).
class ChunkDataSink {
 public:
  virtual ~ChunkDataSink() = default;
  virtual void on_chunk_data(std::span<const char> data) = 0;
};

// Incremental validator of the chunked transfer coding (RFC 9112 §7.1), fixed-size state: feed
// it whatever arrived; it never allocates.
class ChunkedFramer {
 public:
  BodyProgress feed(std::span<const char> bytes, ChunkDataSink* sink = nullptr);
  BodyProgress feed(std::string_view bytes, ChunkDataSink* sink = nullptr) {
    return feed(std::span<const char>(bytes), sink);
  }

  BodyStatus status() const;
  ChunkedError error() const { return error_; }              // valid after kError
  uint64_t wire_bytes() const { return wire_bytes_; }        // framed bytes consumed so far
  uint64_t payload_bytes() const { return payload_bytes_; }  // decoded data bytes so far
  uint64_t chunk_count() const { return chunk_count_; }      // non-empty chunks so far

  void reset() { *this = ChunkedFramer{}; }

 private:
  enum class State : uint8_t {
    kSizeFirst,
    kSize,
    kSizeSpace,
    kExtension,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerLineStart,
    kTrailerName,
    kTrailerValue,
    kTrailerLf,
    kFinalLf,
    kDone,
    kError,
  };

  BodyProgress fail(ChunkedError error, size_t consumed);
  bool step(char c);  // one framing byte; false on error

  State state_ = State::kSizeFirst;
  ChunkedError error_ = ChunkedError::kInvalidChunkSize;
  uint64_t chunk_size_ = 0;
  uint64_t remaining_ = 0;
  size_t line_bytes_ = 0;
  size_t trailer_bytes_ = 0;
  uint64_t wire_bytes_ = 0;
  uint64_t payload_bytes_ = 0;
  uint64_t chunk_count_ = 0;
};

// Counts a Content-Length body down to its end.
class FixedLengthBody {
 public:
  explicit FixedLengthBody(uint64_t length) : remaining_(length) {}

  // consumed = min(bytes.size(), remaining); kComplete once nothing remains.
  BodyProgress feed(std::span<const char> bytes);
  BodyProgress feed(std::string_view bytes) { return feed(std::span<const char>(bytes)); }

  uint64_t remaining() const { return remaining_; }
  bool done() const { return remaining_ == 0; }

 private:
  uint64_t remaining_;
};

}  // namespace openshell::proxy
