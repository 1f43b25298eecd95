// Streaming request bodies past a credential-marker scan: forward all but a tail window, scan the
// decoded payload (chunk framing removed) with the same window carried across reads.
#include "body_marker_guard.hpp"

#include <string>
#include <type_traits>

#include "openshell/proxy/chunked.hpp"
#include "openshell/proxy/credential_rewrite.hpp"

namespace openshell::proxy::detail {

namespace {

// Decoded chunk data, appended to the scan window.
class ScanSink final : public ChunkDataSink {
 public:
  explicit ScanSink(std::string& into) : into_(into) {}
  void on_chunk_data(std::span<const char> data) override {
    into_.append(data.data(), data.size());
  }

 private:
  std::string& into_;
};

template <class Framer>
asio::awaitable<GuardedBodyRelay> relay_guarded(StreamReader& from, ByteStream& to, Framer& framer,
                                                bool chunked, Clock::duration idle) {
  GuardedBodyRelay out;
  std::string held;  // wire bytes consumed but not yet forwarded
  std::string scan;  // decoded payload: the last window plus what just arrived
  ScanSink sink(scan);
  for (;;) {
    const std::string_view pending = from.pending();
    if (!pending.empty()) {
      BodyProgress progress;
      if constexpr (std::is_same_v<Framer, ChunkedFramer>) {
        progress = framer.feed(pending, &sink);
      } else {
        progress = framer.feed(pending);
      }
      if (progress.status == BodyStatus::kError) {
        out.relay.malformed = true;
        out.relay.error = "malformed message body framing";
        co_return out;
      }
      if (!chunked) scan.append(pending.substr(0, progress.consumed));
      held.append(pending.substr(0, progress.consumed));
      from.consume(progress.consumed);
      if (contains_credential_marker(scan)) {
        out.marker = true;
        out.relay.error = "credential placeholder marker in a request body that is not rewritten";
        co_return out;
      }
      if (scan.size() > kMarkerTailWindow) scan.erase(0, scan.size() - kMarkerTailWindow);
      const bool complete = progress.status == BodyStatus::kComplete;
      const size_t send =
          complete ? held.size()
                   : (held.size() > kMarkerTailWindow ? held.size() - kMarkerTailWindow : 0);
      if (send > 0) {
        if (auto error = co_await write_all(to, std::string_view(held).substr(0, send), idle)) {
          out.relay.error = "write failed: " + error.message();
          co_return out;
        }
        out.relay.bytes += send;
        held.erase(0, send);
      }
      if (complete) {
        out.relay.ok = true;
        co_return out;
      }
    }
    const ReadOutcome read = co_await from.fill(Clock::now() + idle);
    if (read.error) {
      out.relay.error = "body ended early: " + read.error.message();
      co_return out;
    }
  }
}

}  // namespace

asio::awaitable<GuardedBodyRelay> relay_body_without_markers(StreamReader& from, ByteStream& to,
                                                             BodyFraming framing, uint64_t length,
                                                             Clock::duration idle) {
  switch (framing) {
    case BodyFraming::kLength: {
      FixedLengthBody body(length);
      co_return co_await relay_guarded(from, to, body, false, idle);
    }
    case BodyFraming::kChunked: {
      ChunkedFramer framer;
      co_return co_await relay_guarded(from, to, framer, true, idle);
    }
    case BodyFraming::kNone:
    case BodyFraming::kUntilClose:
      break;
  }
  GuardedBodyRelay out;
  out.relay.ok = framing == BodyFraming::kNone;
  if (!out.relay.ok) out.relay.error = "request body without framing";
  co_return out;
}

}  // namespace openshell::proxy::detail
