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

// Buffered reads from one socket. `pending()` holds bytes received but not yet consumed.
class SocketReader {
 public:
  explicit SocketReader(asio::ip::tcp::socket& socket) : socket_(socket), watchdog_(socket) {}

  // Appends one read's worth to the pending buffer, waiting at most until `deadline`.
  asio::awaitable<ReadOutcome> fill(Clock::time_point deadline);

  std::string_view pending() const { return std::string_view(buffer_).substr(offset_); }
  void consume(size_t bytes);
  void prepend(std::string_view bytes);  // bytes read elsewhere that belong in front
  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  asio::ip::tcp::socket& socket_;
  Watchdog watchdog_;
  std::string buffer_;
  size_t offset_ = 0;
};

}  // namespace openshell::proxy::detail
