// Chunked framer and Content-Length counter: message boundaries, strict framing, limits, and
// incremental feeding equal to one-shot.
#include "openshell/proxy/chunked.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

using openshell::proxy::BodyStatus;
using openshell::proxy::ChunkDataSink;
using openshell::proxy::ChunkedError;
using openshell::proxy::ChunkedFramer;
using openshell::proxy::FixedLengthBody;
using openshell::proxy::kMaxChunkLineBytes;
using openshell::proxy::kMaxChunkTrailerBytes;

namespace {

class CollectSink : public ChunkDataSink {
 public:
  void on_chunk_data(std::span<const char> data) override { text.append(data.data(), data.size()); }
  std::string text;
};

struct Outcome {
  BodyStatus status = BodyStatus::kNeedMore;
  size_t consumed = 0;
  ChunkedError error = ChunkedError::kInvalidChunkSize;
  std::string payload;
  uint64_t wire_bytes = 0;
};

Outcome frame_all(std::string_view input) {
  ChunkedFramer framer;
  CollectSink sink;
  const auto progress = framer.feed(input, &sink);
  return {progress.status, progress.consumed, framer.error(), sink.text, framer.wire_bytes()};
}

Outcome frame_in_pieces(std::string_view input, size_t piece) {
  ChunkedFramer framer;
  CollectSink sink;
  size_t consumed = 0;
  for (size_t i = 0; i < input.size() && framer.status() == BodyStatus::kNeedMore; i += piece) {
    consumed += framer.feed(input.substr(i, piece), &sink).consumed;
  }
  return {framer.status(), consumed, framer.error(), sink.text, framer.wire_bytes()};
}

// One-shot, byte-by-byte and 3-byte pieces must agree.
Outcome frame(std::string_view input) {
  const Outcome all = frame_all(input);
  for (const size_t piece : {size_t{1}, size_t{3}}) {
    const Outcome pieces = frame_in_pieces(input, piece);
    REQUIRE(pieces.status == all.status);
    if (all.status == BodyStatus::kError) {
      REQUIRE(pieces.error == all.error);
    } else {
      REQUIRE(pieces.consumed == all.consumed);
      REQUIRE(pieces.payload == all.payload);
      REQUIRE(pieces.wire_bytes == all.wire_bytes);
    }
  }
  return all;
}

std::string complete_payload(std::string_view body) {
  const Outcome out = frame(body);
  INFO("body: " << body);
  REQUIRE(out.status == BodyStatus::kComplete);
  REQUIRE(out.consumed == body.size());
  REQUIRE(out.wire_bytes == body.size());
  return out.payload;
}

ChunkedError framing_error(std::string_view body) {
  const Outcome out = frame(body);
  INFO("body: " << body);
  REQUIRE(out.status == BodyStatus::kError);
  return out.error;
}

}  // namespace

TEST_CASE("chunked: a message ends exactly at its last CRLF", "[chunked]") {
  const std::string body = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
  const std::string stream = body + "GET /next HTTP/1.1\r\n\r\n";
  const Outcome out = frame(stream);
  REQUIRE(out.status == BodyStatus::kComplete);
  CHECK(out.consumed == body.size());  // the pipelined request is not part of it
  CHECK(out.payload == "hello, world");

  ChunkedFramer framer;
  REQUIRE(framer.feed(std::string_view(body)).status == BodyStatus::kComplete);
  CHECK(framer.chunk_count() == 2);
  CHECK(framer.payload_bytes() == 12);
  CHECK(framer.wire_bytes() == body.size());
  // Further feeding does nothing.
  const auto again = framer.feed(std::string_view("5\r\n"));
  CHECK(again.status == BodyStatus::kComplete);
  CHECK(again.consumed == 0);
  framer.reset();
  CHECK(framer.status() == BodyStatus::kNeedMore);
  CHECK(framer.feed(std::string_view("0\r\n\r\n")).status == BodyStatus::kComplete);
}

TEST_CASE("chunked: sizes, extensions and trailers that are accepted", "[chunked]") {
  CHECK(complete_payload("0\r\n\r\n").empty());
  CHECK(complete_payload("A\r\n0123456789\r\n0\r\n\r\n") == "0123456789");
  CHECK(complete_payload("a\r\n0123456789\r\n0\r\n\r\n") == "0123456789");
  CHECK(complete_payload("0000000000000000000003\r\nabc\r\n0\r\n\r\n") == "abc");
  CHECK(complete_payload("3;name=value\r\nabc\r\n0;last\r\n\r\n") == "abc");
  CHECK(complete_payload("3;a=\"quoted; \\\" value\"\r\nabc\r\n0\r\n\r\n") == "abc");
  CHECK(complete_payload("3 ;ext\r\nabc\r\n0\r\n\r\n") == "abc");
  CHECK(complete_payload("3\t\r\nabc\r\n0\r\n\r\n") == "abc");
  CHECK(complete_payload("3\r\na\r\n\r\n0\r\n\r\n") == "a\r\n");  // data is opaque
  CHECK(complete_payload("0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n").empty());
}

TEST_CASE("chunked: malformed chunk-size lines", "[chunked]") {
  CHECK(framing_error("\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error(";ext\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error("g\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error("0x5\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error("-1\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error("+1\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error(" 5\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error("5 5\r\n") == ChunkedError::kInvalidChunkSize);
  CHECK(framing_error("5\n") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("5;ext\n") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("5\rX") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("5\r\r\n") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("5;a=\x01\r\n") == ChunkedError::kInvalidChunkExtension);
  CHECK(framing_error("5;a=\x7f\r\n") == ChunkedError::kInvalidChunkExtension);
  CHECK(framing_error(std::string("5;a\0b\r\n", 7)) == ChunkedError::kInvalidChunkExtension);
}

TEST_CASE("chunked: data must be followed by CRLF", "[chunked]") {
  CHECK(framing_error("5\r\nhelloX\r\n") == ChunkedError::kMissingChunkCrlf);
  CHECK(framing_error("5\r\nhello\n0\r\n\r\n") == ChunkedError::kMissingChunkCrlf);
  CHECK(framing_error("5\r\nhello\rX") == ChunkedError::kMissingChunkCrlf);
  CHECK(framing_error("3\r\nhello\r\n") == ChunkedError::kMissingChunkCrlf);  // size lies
}

TEST_CASE("chunked: chunk size overflow", "[chunked]") {
  // The largest accepted size: waiting for data, not an error.
  ChunkedFramer framer;
  CHECK(framer.feed(std::string_view("7fffffffffffffff\r\nab")).status == BodyStatus::kNeedMore);
  CHECK(framer.payload_bytes() == 2);
  CHECK(framing_error("8000000000000000\r\n") == ChunkedError::kChunkSizeOverflow);
  CHECK(framing_error("ffffffffffffffff\r\n") == ChunkedError::kChunkSizeOverflow);
  CHECK(framing_error("10000000000000000\r\n") == ChunkedError::kChunkSizeOverflow);
}

TEST_CASE("chunked: chunk-size line limit", "[chunked]") {
  const std::string at_limit = "3;" + std::string(kMaxChunkLineBytes - 2, 'x');
  REQUIRE(at_limit.size() == kMaxChunkLineBytes);
  CHECK(complete_payload(at_limit + "\r\nabc\r\n0\r\n\r\n") == "abc");
  CHECK(framing_error(at_limit + "x\r\nabc\r\n0\r\n\r\n") == ChunkedError::kChunkLineTooLong);
  // Leading zeros count too.
  CHECK(framing_error(std::string(kMaxChunkLineBytes + 1, '0') + "\r\n") ==
        ChunkedError::kChunkLineTooLong);
}

TEST_CASE("chunked: trailers are validated and bounded", "[chunked]") {
  CHECK(framing_error("0\r\nX: a\r\n b\r\n\r\n") == ChunkedError::kInvalidTrailer);  // obs-fold
  CHECK(framing_error("0\r\n\tX: a\r\n\r\n") == ChunkedError::kInvalidTrailer);
  CHECK(framing_error("0\r\nNoColon\r\n\r\n") == ChunkedError::kInvalidTrailer);
  CHECK(framing_error("0\r\nX : a\r\n\r\n") == ChunkedError::kInvalidTrailer);
  CHECK(framing_error("0\r\n: a\r\n\r\n") == ChunkedError::kInvalidTrailer);
  CHECK(framing_error("0\r\nX@: a\r\n\r\n") == ChunkedError::kInvalidTrailer);
  CHECK(framing_error("0\r\nX: a\x01\r\n\r\n") == ChunkedError::kInvalidTrailer);
  CHECK(framing_error("0\r\nX: a\n\r\n") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("0\r\nX: a\rb\r\n\r\n") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("0\r\n\n") == ChunkedError::kBadLineEnding);
  CHECK(framing_error("0\r\n\rX") == ChunkedError::kBadLineEnding);

  // Trailer section of exactly the limit (field line + final CRLF) passes; one more byte fails.
  const std::string name = "X: ";
  const std::string exact =
      name + std::string(kMaxChunkTrailerBytes - name.size() - 4, 'v') + "\r\n\r\n";
  REQUIRE(exact.size() == kMaxChunkTrailerBytes);
  CHECK(complete_payload("0\r\n" + exact).empty());
  const std::string over =
      name + std::string(kMaxChunkTrailerBytes - name.size() - 3, 'v') + "\r\n\r\n";
  CHECK(framing_error("0\r\n" + over) == ChunkedError::kTrailerTooLarge);
}

TEST_CASE("chunked: a large chunk arrives in pieces", "[chunked]") {
  const std::string data(100000, 'z');
  char size_hex[32];
  std::snprintf(size_hex, sizeof size_hex, "%zx", data.size());
  const std::string body = std::string(size_hex) + "\r\n" + data + "\r\n0\r\n\r\n";
  ChunkedFramer framer;
  CollectSink sink;
  size_t consumed = 0;
  for (size_t i = 0; i < body.size(); i += 4096) {
    consumed += framer.feed(std::string_view(body).substr(i, 4096), &sink).consumed;
  }
  CHECK(framer.status() == BodyStatus::kComplete);
  CHECK(consumed == body.size());
  CHECK(sink.text == data);
  CHECK(framer.payload_bytes() == data.size());
}

TEST_CASE("chunked: every error has a name and a reason", "[chunked]") {
  for (const ChunkedError error :
       {ChunkedError::kInvalidChunkSize, ChunkedError::kChunkSizeOverflow,
        ChunkedError::kChunkLineTooLong, ChunkedError::kInvalidChunkExtension,
        ChunkedError::kBadLineEnding, ChunkedError::kMissingChunkCrlf,
        ChunkedError::kInvalidTrailer, ChunkedError::kTrailerTooLarge}) {
    CHECK_FALSE(openshell::proxy::chunked_error_name(error).empty());
    CHECK_FALSE(openshell::proxy::chunked_error_reason(error).empty());
  }
}

TEST_CASE("FixedLengthBody counts to the end of the body", "[chunked]") {
  FixedLengthBody body(5);
  auto progress = body.feed(std::string_view("abc"));
  CHECK(progress.status == BodyStatus::kNeedMore);
  CHECK(progress.consumed == 3);
  CHECK(body.remaining() == 2);
  progress = body.feed(std::string_view("deGET / HTTP/1.1"));
  CHECK(progress.status == BodyStatus::kComplete);
  CHECK(progress.consumed == 2);
  CHECK(body.done());
  progress = body.feed(std::string_view("more"));
  CHECK(progress.status == BodyStatus::kComplete);
  CHECK(progress.consumed == 0);

  FixedLengthBody empty(0);
  CHECK(empty.done());
  CHECK(empty.feed(std::string_view("x")).consumed == 0);
  CHECK(empty.feed(std::span<const char>()).status == BodyStatus::kComplete);
}
