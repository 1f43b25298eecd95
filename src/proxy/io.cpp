// Deadline-bound socket I/O for the connection handlers.
#include "io.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <variant>

namespace openshell::proxy::detail {

using asio::experimental::awaitable_operators::operator||;

asio::awaitable<std::error_code> write_all(asio::ip::tcp::socket& socket, std::string_view data,
                                           Clock::duration timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto result = co_await (asio::async_write(socket, asio::buffer(data), kAsTuple) ||
                          timer.async_wait(kAsTuple));
  if (result.index() == 1) co_return std::make_error_code(std::errc::timed_out);
  co_return std::get<0>(std::get<0>(result));
}

asio::awaitable<ReadOutcome> SocketReader::fill(Clock::time_point deadline) {
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  const size_t old_size = buffer_.size();
  buffer_.resize(old_size + kReadChunk);
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  auto result = co_await (
      socket_.async_read_some(asio::buffer(buffer_.data() + old_size, kReadChunk), kAsTuple) ||
      timer.async_wait(kAsTuple));
  if (result.index() == 1) {
    buffer_.resize(old_size);
    co_return ReadOutcome{std::make_error_code(std::errc::timed_out), 0};
  }
  const auto [error, bytes] = std::get<0>(result);
  buffer_.resize(old_size + bytes);
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
