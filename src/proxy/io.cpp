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

asio::awaitable<ReadOutcome> TcpStream::read_some(std::span<char> into,
                                                  Clock::time_point deadline) {
  const bool bounded = deadline != Clock::time_point::max();
  if (bounded) watchdog_.arm(deadline);
  const auto [error, bytes] =
      co_await socket_.async_read_some(asio::buffer(into.data(), into.size()), kAsTuple);
  const bool timed_out = bounded && watchdog_.disarm();
  if (timed_out && bytes == 0) co_return ReadOutcome{std::make_error_code(std::errc::timed_out), 0};
  co_return ReadOutcome{bytes > 0 ? std::error_code{} : error, bytes};
}

asio::awaitable<std::error_code> TcpStream::write(std::string_view data,
                                                  Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) {
    auto [error, written] = co_await asio::async_write(socket_, asio::buffer(data), kAsTuple);
    co_return error;
  }
  co_return co_await write_all(socket_, data, deadline - Clock::now());
}

asio::awaitable<std::error_code> TcpStream::wait_readable(Clock::time_point deadline) {
  const bool bounded = deadline != Clock::time_point::max();
  if (bounded) watchdog_.arm(deadline);
  auto [error] = co_await socket_.async_wait(asio::socket_base::wait_read, kAsTuple);
  if (bounded && watchdog_.disarm()) co_return std::make_error_code(std::errc::timed_out);
  co_return error;
}

asio::awaitable<void> TcpStream::shutdown_send() {
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  co_return;
}

void TcpStream::close() {
  std::error_code ignored;
  socket_.close(ignored);
}

asio::awaitable<std::error_code> write_all(ByteStream& stream, std::string_view data,
                                           Clock::duration timeout) {
  co_return co_await stream.write(data, Clock::now() + timeout);
}

asio::awaitable<ReadOutcome> StreamReader::fill(Clock::time_point deadline) {
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  const size_t old_size = buffer_.size();
  buffer_.resize(old_size + kReadChunk);
  const ReadOutcome read =
      co_await stream_.read_some(std::span<char>(buffer_.data() + old_size, kReadChunk), deadline);
  buffer_.resize(old_size + read.bytes);
  co_return read;
}

asio::awaitable<ReadOutcome> StreamReader::fill_when_ready(Clock::time_point deadline) {
  if (pending().empty()) {
    std::string().swap(buffer_);
    offset_ = 0;
    if (auto error = co_await stream_.wait_readable(deadline)) co_return ReadOutcome{error, 0};
  }
  co_return co_await fill(deadline);
}

void StreamReader::consume(size_t bytes) {
  offset_ += std::min(bytes, buffer_.size() - offset_);
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
}

void StreamReader::prepend(std::string_view bytes) {
  buffer_.insert(offset_, bytes);
}

}  // namespace openshell::proxy::detail
