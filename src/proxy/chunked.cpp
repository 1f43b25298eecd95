// Chunked transfer-coding framer and Content-Length counter for body relays. Strict on framing
// bytes (CRLF only, hex sizes, bounded lines) because relays and origins must agree on where a
// message ends; lenient only where no ambiguity can arise (whitespace before an extension).
#include "openshell/proxy/chunked.hpp"

#include <algorithm>
#include <string_view>

namespace openshell::proxy {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_ctl_except_htab(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

}  // namespace

std::string_view chunked_error_name(ChunkedError error) {
  switch (error) {
    case ChunkedError::kInvalidChunkSize:
      return "invalid_chunk_size";
    case ChunkedError::kChunkSizeOverflow:
      return "chunk_size_overflow";
    case ChunkedError::kChunkLineTooLong:
      return "chunk_line_too_long";
    case ChunkedError::kInvalidChunkExtension:
      return "invalid_chunk_extension";
    case ChunkedError::kBadLineEnding:
      return "bad_line_ending";
    case ChunkedError::kMissingChunkCrlf:
      return "missing_chunk_crlf";
    case ChunkedError::kInvalidTrailer:
      return "invalid_trailer";
    case ChunkedError::kTrailerTooLarge:
      return "trailer_too_large";
  }
  return "unknown";
}

std::string_view chunked_error_reason(ChunkedError error) {
  switch (error) {
    case ChunkedError::kInvalidChunkSize:
      return "chunk size is not a hexadecimal number";
    case ChunkedError::kChunkSizeOverflow:
      return "chunk size is too large";
    case ChunkedError::kChunkLineTooLong:
      return "chunk size line exceeds 4096 bytes";
    case ChunkedError::kInvalidChunkExtension:
      return "control byte in chunk extension";
    case ChunkedError::kBadLineEnding:
      return "chunked framing line does not end in CRLF";
    case ChunkedError::kMissingChunkCrlf:
      return "chunk data not followed by CRLF";
    case ChunkedError::kInvalidTrailer:
      return "malformed trailer field";
    case ChunkedError::kTrailerTooLarge:
      return "trailer section exceeds 16384 bytes";
  }
  return "malformed chunked body";
}

BodyStatus ChunkedFramer::status() const {
  if (state_ == State::kDone) return BodyStatus::kComplete;
  if (state_ == State::kError) return BodyStatus::kError;
  return BodyStatus::kNeedMore;
}

BodyProgress ChunkedFramer::fail(ChunkedError error, size_t consumed) {
  state_ = State::kError;
  error_ = error;
  return {BodyStatus::kError, consumed};
}

bool ChunkedFramer::step(char c) {
  const auto error = [this](ChunkedError e) {
    error_ = e;
    return false;
  };
  switch (state_) {
    case State::kSizeFirst: {
      const int digit = hex_value(c);
      if (digit < 0) return error(ChunkedError::kInvalidChunkSize);
      chunk_size_ = static_cast<uint64_t>(digit);
      line_bytes_ = 1;
      state_ = State::kSize;
      return true;
    }
    case State::kSize:
    case State::kSizeSpace:
    case State::kExtension: {
      if (c == '\r') {
        state_ = State::kSizeLf;
        return true;
      }
      if (++line_bytes_ > kMaxChunkLineBytes) return error(ChunkedError::kChunkLineTooLong);
      if (c == '\n') {
        return error(ChunkedError::kBadLineEnding);
      } else if (state_ == State::kExtension) {
        // Any visible byte or quoted-string content; CR/LF/controls are what smuggling needs.
        if (is_ctl_except_htab(c)) return error(ChunkedError::kInvalidChunkExtension);
      } else if (c == ';') {
        state_ = State::kExtension;
      } else if (c == ' ' || c == '\t') {
        state_ = State::kSizeSpace;
      } else if (state_ == State::kSize && hex_value(c) >= 0) {
        const auto digit = static_cast<uint64_t>(hex_value(c));
        if (chunk_size_ > (kMaxChunkSize - digit) / 16) {
          return error(ChunkedError::kChunkSizeOverflow);
        }
        chunk_size_ = chunk_size_ * 16 + digit;
      } else {
        return error(ChunkedError::kInvalidChunkSize);
      }
      return true;
    }
    case State::kSizeLf:
      if (c != '\n') return error(ChunkedError::kBadLineEnding);
      if (chunk_size_ == 0) {
        trailer_bytes_ = 0;
        state_ = State::kTrailerLineStart;
      } else {
        remaining_ = chunk_size_;
        ++chunk_count_;
        state_ = State::kData;
      }
      return true;
    case State::kDataCr:
      if (c != '\r') return error(ChunkedError::kMissingChunkCrlf);
      state_ = State::kDataLf;
      return true;
    case State::kDataLf:
      if (c != '\n') return error(ChunkedError::kMissingChunkCrlf);
      state_ = State::kSizeFirst;
      return true;
    case State::kTrailerLineStart:
    case State::kTrailerName:
    case State::kTrailerValue:
    case State::kTrailerLf:
    case State::kFinalLf:
      if (++trailer_bytes_ > kMaxChunkTrailerBytes) return error(ChunkedError::kTrailerTooLarge);
      if (state_ == State::kTrailerLineStart) {
        if (c == '\r') {
          state_ = State::kFinalLf;
        } else if (is_tchar(c)) {
          state_ = State::kTrailerName;  // a leading SP/HTAB (obs-fold) is refused below
        } else {
          return error(c == '\n' ? ChunkedError::kBadLineEnding : ChunkedError::kInvalidTrailer);
        }
      } else if (state_ == State::kTrailerName) {
        if (c == ':') {
          state_ = State::kTrailerValue;
        } else if (!is_tchar(c)) {
          return error(ChunkedError::kInvalidTrailer);  // missing ':' or whitespace before it
        }
      } else if (state_ == State::kTrailerValue) {
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          return error(ChunkedError::kBadLineEnding);
        } else if (is_ctl_except_htab(c)) {
          return error(ChunkedError::kInvalidTrailer);
        }
      } else {
        if (c != '\n') return error(ChunkedError::kBadLineEnding);
        state_ = state_ == State::kFinalLf ? State::kDone : State::kTrailerLineStart;
      }
      return true;
    case State::kData:  // handled in bulk by feed()
    case State::kDone:
    case State::kError:
      break;
  }
  return error(ChunkedError::kInvalidChunkSize);
}

BodyProgress ChunkedFramer::feed(std::span<const char> bytes, ChunkDataSink* sink) {
  if (state_ == State::kDone || state_ == State::kError) return {status(), 0};
  size_t i = 0;
  while (i < bytes.size()) {
    if (state_ == State::kData) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - i));
      if (sink != nullptr) sink->on_chunk_data(bytes.subspan(i, take));
      i += take;
      remaining_ -= take;
      payload_bytes_ += take;
      if (remaining_ == 0) state_ = State::kDataCr;
      continue;
    }
    const char c = bytes[i++];
    if (!step(c)) {
      wire_bytes_ += i;
      return fail(error_, i);
    }
    if (state_ == State::kDone) {
      wire_bytes_ += i;
      return {BodyStatus::kComplete, i};
    }
  }
  wire_bytes_ += i;
  return {BodyStatus::kNeedMore, i};
}

BodyProgress FixedLengthBody::feed(std::span<const char> bytes) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size()));
  remaining_ -= take;
  return {remaining_ == 0 ? BodyStatus::kComplete : BodyStatus::kNeedMore, take};
}

}  // namespace openshell::proxy
