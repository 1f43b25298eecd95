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

// Writes all of `data`; the deadline bounds the whole write (a client that stops reading).
asio::awaitable<std::error_code> write_all(asio::ip::tcp::socket& socket, std::string_view data,
                                           Clock::duration timeout);

// Buffered reads from one socket. `pending()` holds bytes received but not yet consumed.
class SocketReader {
 public:
  explicit SocketReader(asio::ip::tcp::socket& socket) : socket_(socket) {}

  // Appends one read's worth to the pending buffer, waiting at most until `deadline`.
  asio::awaitable<ReadOutcome> fill(Clock::time_point deadline);

  std::string_view pending() const { return std::string_view(buffer_).substr(offset_); }
  void consume(size_t bytes);
  void prepend(std::string_view bytes);  // bytes read elsewhere that belong in front
  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  asio::ip::tcp::socket& socket_;
  std::string buffer_;
  size_t offset_ = 0;
};

}  // namespace openshell::proxy::detail
