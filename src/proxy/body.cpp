// Message-body relay for forward-proxy requests and responses.
#include "body.hpp"

#include "openshell/proxy/chunked.hpp"

namespace openshell::proxy::detail {

namespace {

// Feeds pending bytes to `framer`, forwards what belongs to the message; repeats until done.
template <class Framer>
asio::awaitable<BodyRelay> relay_framed(StreamReader& from, ByteStream& to, Framer& framer,
                                        Clock::duration idle) {
  BodyRelay result;
  for (;;) {
    const std::string_view pending = from.pending();
    if (!pending.empty()) {
      const BodyProgress progress = framer.feed(pending);
      if (progress.status == BodyStatus::kError) {
        result.malformed = true;
        result.error = "malformed message body framing";
        co_return result;
      }
      if (progress.consumed > 0) {
        if (auto error = co_await write_all(to, pending.substr(0, progress.consumed), idle)) {
          result.error = "write failed: " + error.message();
          co_return result;
        }
        result.bytes += progress.consumed;
        from.consume(progress.consumed);
      }
      if (progress.status == BodyStatus::kComplete) {
        result.ok = true;
        co_return result;
      }
    }
    const ReadOutcome read = co_await from.fill(Clock::now() + idle);
    if (read.error) {
      result.error = "body ended early: " + read.error.message();
      co_return result;
    }
  }
}

}  // namespace

asio::awaitable<BodyRelay> relay_body(StreamReader& from, ByteStream& to, BodyFraming framing,
                                      uint64_t length, Clock::duration idle) {
  switch (framing) {
    case BodyFraming::kNone:
      co_return BodyRelay{true, false, 0, {}};
    case BodyFraming::kLength: {
      FixedLengthBody body(length);
      co_return co_await relay_framed(from, to, body, idle);
    }
    case BodyFraming::kChunked: {
      ChunkedFramer framer;
      co_return co_await relay_framed(from, to, framer, idle);
    }
    case BodyFraming::kUntilClose:
      break;
  }
  BodyRelay result;
  for (;;) {
    const std::string_view pending = from.pending();
    if (!pending.empty()) {
      if (auto error = co_await write_all(to, pending, idle)) {
        result.error = "write failed: " + error.message();
        co_return result;
      }
      result.bytes += pending.size();
      from.consume(pending.size());
    }
    const ReadOutcome read = co_await from.fill(Clock::now() + idle);
    if (read.error == asio::error::eof) {
      result.ok = true;
      co_return result;
    }
    if (read.error) {
      result.error = "body read failed: " + read.error.message();
      co_return result;
    }
  }
}

}  // namespace openshell::proxy::detail
