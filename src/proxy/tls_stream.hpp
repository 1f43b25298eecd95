// Private to the proxy: a TLS session (mbedTLS) over an Asio TCP socket, driven from coroutines.
// mbedTLS never touches the socket: its I/O callbacks read from and append to two memory
// buffers, and this class moves those buffers to and from the socket asynchronously. So no
// thread blocks on a handshake, and a stalled peer costs a suspended coroutine, not a thread.
#pragma once

#include <mbedtls/ssl.h>

#include <asio/steady_timer.hpp>
#include <string>
#include <system_error>

#include "io.hpp"

namespace openshell::proxy::detail {

// mbedTLS error codes (negative ints) as std::error_code; message() is mbedtls_strerror's.
const std::error_category& tls_category();
std::error_code make_tls_error(int mbedtls_code);

class TlsStream final : public ByteStream {
 public:
  // `config` must outlive the stream (leaf server configs are held by the caller's shared_ptr;
  // the client config lives as long as the proxy).
  TlsStream(asio::ip::tcp::socket& socket, const mbedtls_ssl_config& config);
  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Bytes that arrived on the socket before the handshake (the ClientHello we peeked at).
  void feed_received(std::string_view bytes) { incoming_.append(bytes); }
  // Client side: SNI and the name the certificate must carry (not for IP literals).
  std::error_code set_hostname(const std::string& host);
  mbedtls_ssl_context& ssl() { return ssl_; }

  // Runs the handshake to completion; on failure the error says why (verification failures
  // are kTlsVerifyFailed with verify_flags() set).
  asio::awaitable<std::error_code> handshake(Clock::time_point deadline);
  uint32_t verify_flags() const;

  asio::awaitable<ReadOutcome> read_some(std::span<char> into, Clock::time_point deadline) override;
  asio::awaitable<std::error_code> write(std::string_view data,
                                         Clock::time_point deadline) override;
  asio::awaitable<std::error_code> wait_readable(Clock::time_point deadline) override;
  asio::awaitable<void> shutdown_send() override;
  void close() override;
  asio::ip::tcp::socket& socket() override { return socket_; }

 private:
  static int send_to_memory(void* self, const unsigned char* data, size_t length);
  static int receive_from_memory(void* self, unsigned char* data, size_t length);

  // Reads what the socket has into `incoming_`.
  asio::awaitable<std::error_code> receive(Clock::time_point deadline);
  // Sends everything in `outgoing_`. Only one flush writes at a time; a second waits for it.
  asio::awaitable<std::error_code> flush(Clock::time_point deadline);

  asio::ip::tcp::socket& socket_;
  Watchdog read_watchdog_;
  mbedtls_ssl_context ssl_;
  std::string incoming_;  // ciphertext received, not yet taken by mbedTLS
  size_t incoming_offset_ = 0;
  std::string outgoing_;  // ciphertext produced by mbedTLS, not yet sent
  bool flushing_ = false;
  asio::steady_timer flush_done_;  // cancelled (woken) whenever a flush finishes
  bool close_notify_sent_ = false;
};

}  // namespace openshell::proxy::detail
