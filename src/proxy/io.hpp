// Private to the proxy: socket reads with deadlines, and a reader that keeps bytes received past
// the end of one message (pipelined requests, body bytes behind a head) for the next consumer.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "openshell/proxy/relay.hpp"

namespace openshell::proxy::detail {

constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);

using Clock = std::chrono::steady_clock;

// Size of one read from a client or upstream socket.
inline constexpr size_t kReadChunk = 16 * 1024;

struct ReadOutcome {
  std::error_code error;  // asio::error::eof on orderly close; timed_out on the deadline
  size_t bytes = 0;
};

// Bounds socket operations by cancelling the socket when a deadline passes. A plain timer with
// a callback, not an awaitable `||` race: this runs on every read and write of every
// connection, and the race costs two coroutine frames per operation.
class Watchdog {
 public:
  explicit Watchdog(asio::ip::tcp::socket& socket)
      : socket_(socket), timer_(socket.get_executor()) {}
  // Arms the deadline for the operation about to start.
  void arm(Clock::time_point deadline);
  // Disarms; true when the deadline had passed (the operation was cancelled by it).
  bool disarm();

 private:
  asio::ip::tcp::socket& socket_;
  asio::steady_timer timer_;
  uint64_t armed_ = 0;  // which arm() a firing timer belongs to
  bool fired_ = false;
};

// Writes all of `data`; the deadline bounds the whole write (a client that stops reading).
asio::awaitable<std::error_code> write_all(asio::ip::tcp::socket& socket, std::string_view data,
                                           Clock::duration timeout);

// A byte stream an HTTP exchange runs over: a plain TCP socket, or a TLS session on one.
// Operations on one stream run on the connection's strand; a read and a write may be pending at
// the same time (a relay), two reads or two writes may not.
class ByteStream {
 public:
  virtual ~ByteStream() = default;

  // At least one byte, or an error: asio::error::eof on an orderly end, timed_out on the
  // deadline (Clock::time_point::max(): none).
  virtual asio::awaitable<ReadOutcome> read_some(std::span<char> into,
                                                 Clock::time_point deadline) = 0;
  // All of `data`, or an error.
  virtual asio::awaitable<std::error_code> write(std::string_view data,
                                                 Clock::time_point deadline) = 0;
  // Until bytes can be read without waiting (or an error), holding no buffer meanwhile.
  virtual asio::awaitable<std::error_code> wait_readable(Clock::time_point deadline) = 0;
  // Ends our sending direction (TCP FIN, or TLS close_notify then FIN); reads go on.
  virtual asio::awaitable<void> shutdown_send() = 0;
  virtual void close() = 0;
  virtual asio::ip::tcp::socket& socket() = 0;
};

// Plain TCP.
class TcpStream final : public ByteStream {
 public:
  explicit TcpStream(asio::ip::tcp::socket& socket) : socket_(socket), watchdog_(socket) {}

  asio::awaitable<ReadOutcome> read_some(std::span<char> into, Clock::time_point deadline) override;
  asio::awaitable<std::error_code> write(std::string_view data,
                                         Clock::time_point deadline) override;
  asio::awaitable<std::error_code> wait_readable(Clock::time_point deadline) override;
  asio::awaitable<void> shutdown_send() override;
  void close() override;
  asio::ip::tcp::socket& socket() override { return socket_; }

 private:
  asio::ip::tcp::socket& socket_;
  Watchdog watchdog_;  // reads only: a write deadline gets its own watchdog
};

// Writes all of `data` to a stream within `timeout`.
asio::awaitable<std::error_code> write_all(ByteStream& stream, std::string_view data,
                                           Clock::duration timeout);

// Buffered reads from one stream. `pending()` holds bytes received but not yet consumed.
class StreamReader {
 public:
  explicit StreamReader(ByteStream& stream) : stream_(stream) {}

  // Appends one read's worth to the pending buffer, waiting at most until `deadline`.
  asio::awaitable<ReadOutcome> fill(Clock::time_point deadline);
  // The same for a wait that may be long (the next request on a keep-alive connection): the
  // buffer is released until bytes arrive, so idle connections hold none.
  asio::awaitable<ReadOutcome> fill_when_ready(Clock::time_point deadline);

  std::string_view pending() const { return std::string_view(buffer_).substr(offset_); }
  void consume(size_t bytes);
  void prepend(std::string_view bytes);  // bytes read elsewhere that belong in front
  ByteStream& stream() { return stream_; }

 private:
  ByteStream& stream_;
  std::string buffer_;
  size_t offset_ = 0;
};

}  // namespace openshell::proxy::detail

namespace openshell::proxy {

// Lets relay() run over any ByteStream pair (TLS on one side or both, after an upgrade).
template <>
struct RelayStreamTraits<detail::ByteStream> {
  static asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(
      detail::ByteStream& stream, std::byte* data, std::size_t size) {
    const detail::ReadOutcome read = co_await stream.read_some(
        std::span<char>(reinterpret_cast<char*>(data), size), detail::Clock::time_point::max());
    co_return std::pair{read.error, read.bytes};
  }
  static asio::awaitable<std::pair<std::error_code, std::size_t>> write(detail::ByteStream& stream,
                                                                        const std::byte* data,
                                                                        std::size_t size) {
    const std::error_code error =
        co_await stream.write(std::string_view(reinterpret_cast<const char*>(data), size),
                              detail::Clock::time_point::max());
    co_return std::pair{error, error ? std::size_t{0} : size};
  }
  static asio::awaitable<void> half_close(detail::ByteStream& stream) {
    co_await stream.shutdown_send();
  }
  static void close(detail::ByteStream& stream) { stream.close(); }
  static bool is_eof(const std::error_code& error) { return error == asio::error::eof; }
};

}  // namespace openshell::proxy
