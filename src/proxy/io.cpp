// Deadline-bound socket I/O for the connection handlers.
#include "io.hpp"

#include <asio/read.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <variant>

namespace openshell::proxy::detail {

void Watchdog::arm(Clock::time_point deadline) {
  fired_ = false;
  const uint64_t generation = ++armed_;
  timer_.expires_at(deadline);
  // Runs on the connection's strand, like the operation it guards; a late firing from an
  // earlier arm() sees a different generation and leaves the socket alone.
  timer_.async_wait([this, generation](const std::error_code& error) {
    if (error || generation != armed_) return;
    fired_ = true;
    std::error_code ignored;
    socket_.cancel(ignored);
  });
}

bool Watchdog::disarm() {
  ++armed_;
  timer_.cancel();
  return fired_;
}

asio::awaitable<std::error_code> write_all(asio::ip::tcp::socket& socket, std::string_view data,
                                           Clock::duration timeout) {
  Watchdog watchdog(socket);
  watchdog.arm(Clock::now() + timeout);
  auto [error, written] = co_await asio::async_write(socket, asio::buffer(data), kAsTuple);
  if (watchdog.disarm()) co_return std::make_error_code(std::errc::timed_out);
  co_return error;
}

asio::awaitable<ReadOutcome> SocketReader::fill(Clock::time_point deadline) {
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  const size_t old_size = buffer_.size();
  buffer_.resize(old_size + kReadChunk);
  watchdog_.arm(deadline);
  const auto [error, bytes] = co_await socket_.async_read_some(
      asio::buffer(buffer_.data() + old_size, kReadChunk), kAsTuple);
  const bool timed_out = watchdog_.disarm();
  buffer_.resize(old_size + bytes);
  if (timed_out && bytes == 0) co_return ReadOutcome{std::make_error_code(std::errc::timed_out), 0};
  co_return ReadOutcome{bytes > 0 ? std::error_code{} : error, bytes};
}

void SocketReader::consume(size_t bytes) {
  offset_ += std::min(bytes, buffer_.size() - offset_);
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
}

void SocketReader::prepend(std::string_view bytes) {
  buffer_.insert(offset_, bytes);
}

}  // namespace openshell::proxy::detail
