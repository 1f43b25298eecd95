// The mbedTLS ↔ Asio bridge: mbedTLS calls run to WANT_READ/WANT_WRITE, the coroutine moves
// ciphertext between the memory buffers and the socket, and the call is repeated.
#include "tls_stream.hpp"

#include <mbedtls/error.h>

#include <algorithm>
#include <asio/write.hpp>

namespace openshell::proxy::detail {

namespace {

class TlsCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mbedtls"; }
  std::string message(int value) const override {
    char text[160];
    mbedtls_strerror(-value, text, sizeof(text));
    return text;
  }
};

// Largest single read from the socket: a few TLS records.
constexpr size_t kMaxReceive = 64 * 1024;
// Buffers above this are released once drained, so idle sessions hold only mbedTLS's own.
constexpr size_t kKeepCapacity = 4 * 1024;

bool is_would_block(const std::error_code& error) {
  return error == asio::error::would_block || error == asio::error::try_again;
}

}  // namespace

const std::error_category& tls_category() {
  static const TlsCategory category;
  return category;
}

std::error_code make_tls_error(int mbedtls_code) {
  return {-mbedtls_code, tls_category()};
}

TlsStream::TlsStream(asio::ip::tcp::socket& socket, const mbedtls_ssl_config& config)
    : socket_(socket), read_watchdog_(socket), flush_done_(socket.get_executor()) {
  mbedtls_ssl_init(&ssl_);
  // Only fails on allocation of the record buffers; the first handshake step then reports it.
  (void)mbedtls_ssl_setup(&ssl_, &config);
  mbedtls_ssl_set_bio(&ssl_, this, &TlsStream::send_to_memory, &TlsStream::receive_from_memory,
                      nullptr);
  flush_done_.expires_at(Clock::time_point::max());
}

TlsStream::~TlsStream() {
  mbedtls_ssl_free(&ssl_);
}

std::error_code TlsStream::set_hostname(const std::string& host) {
  const int rc = mbedtls_ssl_set_hostname(&ssl_, host.c_str());
  return rc == 0 ? std::error_code{} : make_tls_error(rc);
}

int TlsStream::send_to_memory(void* self, const unsigned char* data, size_t length) {
  auto* stream = static_cast<TlsStream*>(self);
  stream->outgoing_.append(reinterpret_cast<const char*>(data), length);
  return static_cast<int>(length);
}

int TlsStream::receive_from_memory(void* self, unsigned char* data, size_t length) {
  auto* stream = static_cast<TlsStream*>(self);
  const size_t available = stream->incoming_.size() - stream->incoming_offset_;
  if (available == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  const size_t count = std::min(length, available);
  std::copy_n(stream->incoming_.data() + stream->incoming_offset_, count,
              reinterpret_cast<char*>(data));
  stream->incoming_offset_ += count;
  if (stream->incoming_offset_ == stream->incoming_.size()) {
    stream->incoming_.clear();
    stream->incoming_offset_ = 0;
  }
  return static_cast<int>(count);
}

asio::awaitable<std::error_code> TlsStream::receive(Clock::time_point deadline) {
  if (incoming_.empty() && incoming_.capacity() > kKeepCapacity) std::string().swap(incoming_);
  const bool bounded = deadline != Clock::time_point::max();
  for (;;) {
    // Wait for readability first and size the read by what is there: no buffer is held while
    // a quiet peer keeps the session idle.
    if (bounded) read_watchdog_.arm(deadline);
    auto [wait_error] = co_await socket_.async_wait(asio::socket_base::wait_read, kAsTuple);
    if (bounded && read_watchdog_.disarm()) co_return std::make_error_code(std::errc::timed_out);
    if (wait_error) co_return wait_error;
    std::error_code error;
    const size_t available = std::clamp<size_t>(socket_.available(error), 1, kMaxReceive);
    const size_t old_size = incoming_.size();
    incoming_.resize(old_size + available);
    const size_t received =
        socket_.read_some(asio::buffer(incoming_.data() + old_size, available), error);
    incoming_.resize(old_size + received);
    if (received > 0) co_return std::error_code{};
    if (!is_would_block(error)) co_return error;
  }
}

asio::awaitable<std::error_code> TlsStream::flush(Clock::time_point deadline) {
  while (flushing_)
    (void)co_await flush_done_.async_wait(kAsTuple);
  flushing_ = true;
  std::error_code result;
  const bool bounded = deadline != Clock::time_point::max();
  Watchdog watchdog(socket_);
  while (!outgoing_.empty()) {
    std::string sending;
    sending.swap(outgoing_);
    if (bounded) watchdog.arm(deadline);
    auto [error, written] = co_await asio::async_write(socket_, asio::buffer(sending), kAsTuple);
    if (bounded && watchdog.disarm()) error = std::make_error_code(std::errc::timed_out);
    if (error) {
      result = error;
      outgoing_.clear();
      break;
    }
  }
  if (outgoing_.capacity() > kKeepCapacity) std::string().swap(outgoing_);
  flushing_ = false;
  flush_done_.cancel();
  co_return result;
}

asio::awaitable<std::error_code> TlsStream::handshake(Clock::time_point deadline) {
  for (;;) {
    const int rc = mbedtls_ssl_handshake(&ssl_);
    // Flush first: a failing step has usually queued the alert that tells the peer why.
    if (!outgoing_.empty()) {
      if (auto error = co_await flush(deadline)) co_return error;
    }
    if (rc == 0) co_return std::error_code{};
    if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
      if (auto error = co_await receive(deadline)) co_return error;
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) continue;
    co_return make_tls_error(rc);
  }
}

uint32_t TlsStream::verify_flags() const {
  return mbedtls_ssl_get_verify_result(&ssl_);
}

asio::awaitable<ReadOutcome> TlsStream::read_some(std::span<char> into,
                                                  Clock::time_point deadline) {
  for (;;) {
    const int rc =
        mbedtls_ssl_read(&ssl_, reinterpret_cast<unsigned char*>(into.data()), into.size());
    if (!outgoing_.empty()) {
      if (auto error = co_await flush(deadline)) co_return ReadOutcome{error, 0};
    }
    if (rc > 0) co_return ReadOutcome{{}, static_cast<size_t>(rc)};
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      co_return ReadOutcome{asio::error::eof, 0};
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
      // A TCP end without close_notify is treated as the end of the stream: most servers close
      // that way, and the HTTP framing above already tells a truncated body from a whole one.
      if (auto error = co_await receive(deadline)) co_return ReadOutcome{error, 0};
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) continue;
    co_return ReadOutcome{make_tls_error(rc), 0};
  }
}

asio::awaitable<std::error_code> TlsStream::write(std::string_view data,
                                                  Clock::time_point deadline) {
  while (!data.empty()) {
    const int rc =
        mbedtls_ssl_write(&ssl_, reinterpret_cast<const unsigned char*>(data.data()), data.size());
    if (rc > 0) {
      data.remove_prefix(static_cast<size_t>(rc));
      if (outgoing_.size() < kMaxReceive) continue;
    } else if (rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
      // WANT_READ would mean renegotiation, which is disabled on both sides.
      co_return make_tls_error(rc);
    }
    // The memory BIO never refuses bytes, so WANT_WRITE cannot leave a half-sent record here;
    // retrying with the same buffer is still what mbedTLS requires, and what the loop does.
    if (auto error = co_await flush(deadline)) co_return error;
  }
  co_return co_await flush(deadline);
}

asio::awaitable<std::error_code> TlsStream::wait_readable(Clock::time_point deadline) {
  if (mbedtls_ssl_get_bytes_avail(&ssl_) > 0 || incoming_offset_ < incoming_.size()) {
    co_return std::error_code{};
  }
  co_return co_await receive(deadline);
}

asio::awaitable<void> TlsStream::shutdown_send() {
  if (!close_notify_sent_) {
    close_notify_sent_ = true;
    (void)mbedtls_ssl_close_notify(&ssl_);
    (void)co_await flush(Clock::now() + std::chrono::seconds(5));
  }
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
}

void TlsStream::close() {
  std::error_code ignored;
  socket_.close(ignored);
}

}  // namespace openshell::proxy::detail
