// The byte relay of a tunnel (spec §2.8 step 15, raw copy): both directions at once through
// bounded buffers, half-close passed through, idle timeout, byte counts for the close event.
#pragma once

// GCC 12 at -O2 reports a false -Wnull-dereference inside Asio 1.22's scheduler, inlined from
// its epoll reactor. The warning takes the state at the header's own location, so silencing it
// around the first inclusion of Asio keeps the warning wall clean without hiding our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace openshell::proxy {

// Per direction, to start with: one read moves a whole TLS record, and 10k quiet or interactive
// tunnels cost 320 MiB. The relay reads again only after the previous chunk is fully written, so
// the buffer is all it holds: a slow reader stalls its writer through TCP flow control.
inline constexpr std::size_t kRelayBufferSize = std::size_t{16} * 1024;
// Plain TCP: a direction whose reads keep filling the buffer (a download) switches to this.
// Measured on loopback: ~30% more throughput and ~20% less CPU per byte than 16 KiB; larger
// buffers gained nothing more. This is the per-direction bound.
inline constexpr std::size_t kRelayBulkBufferSize = std::size_t{64} * 1024;
// Quiet but live tunnels (SSH sessions, websockets, pooled DB connections) must survive common
// keepalive intervals; an hour still reclaims tunnels whose peers vanished without a FIN.
inline constexpr std::chrono::milliseconds kDefaultTunnelIdleTimeout{std::chrono::hours(1)};

enum class RelayEnd {
  kCompleted,      // both directions reached EOF
  kIdleTimeout,    // no byte moved either way for idle_timeout
  kCancelled,      // RelayShutdown::end_all() or the awaiting coroutine's cancellation
  kClientError,    // an I/O error on the client side (reset, …)
  kUpstreamError,  // an I/O error on the upstream side
};
std::string_view relay_end_name(RelayEnd end);

// For the close event.
struct RelayStats {
  uint64_t client_to_upstream = 0;  // bytes written to upstream, including the initial bytes
  uint64_t upstream_to_client = 0;  // bytes written to the client
  std::chrono::steady_clock::duration duration{};
  RelayEnd end = RelayEnd::kCompleted;
  std::error_code error;  // the I/O error behind kClientError / kUpstreamError
};

namespace detail {
class RelaySession;
}

// Ends tunnels from outside, e.g. server shutdown once the grace period has passed. One per
// server, shared by every relay through RelayOptions::shutdown. Thread-safe; must outlive the
// relays that use it.
class RelayShutdown {
 public:
  RelayShutdown() = default;
  RelayShutdown(const RelayShutdown&) = delete;
  RelayShutdown& operator=(const RelayShutdown&) = delete;

  // Ends every live relay (kCancelled); relays that start later end at once.
  void end_all();
  std::size_t active() const;

 private:
  friend class detail::RelaySession;
  struct Entry;

  uint64_t add(std::shared_ptr<Entry> entry);  // 0: already ended
  void remove(uint64_t id);

  mutable std::mutex mutex_;
  bool ended_ = false;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Entry>> entries_;
};

struct RelayOptions {
  std::chrono::milliseconds idle_timeout = kDefaultTunnelIdleTimeout;  // <= 0: none
  std::size_t buffer_size = kRelayBufferSize;                          // per direction
  std::size_t bulk_buffer_size = kRelayBulkBufferSize;                 // plain TCP, per direction
  RelayShutdown* shutdown = nullptr;                                   // optional
};

// How the relay half-closes and closes a stream. Specialise for streams whose half-close is not
// a TCP shutdown (a TLS stream sends close_notify).
template <class Stream>
struct RelayStreamTraits {
  static asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(Stream& stream,
                                                                            std::byte* data,
                                                                            std::size_t size) {
    auto [error, count] = co_await stream.async_read_some(
        asio::buffer(data, size), asio::experimental::as_tuple(asio::use_awaitable));
    co_return std::pair{error, count};
  }
  static asio::awaitable<std::pair<std::error_code, std::size_t>> write(Stream& stream,
                                                                        const std::byte* data,
                                                                        std::size_t size) {
    auto [error, count] = co_await asio::async_write(
        stream, asio::buffer(data, size), asio::experimental::as_tuple(asio::use_awaitable));
    co_return std::pair{error, count};
  }
  static asio::awaitable<void> half_close(Stream& stream) {
    std::error_code ignored;
    stream.lowest_layer().shutdown(asio::socket_base::shutdown_send, ignored);
    co_return;
  }
  static void close(Stream& stream) {
    std::error_code ignored;
    stream.lowest_layer().close(ignored);
  }
  static bool is_eof(const std::error_code& error) { return error == asio::error::eof; }
};

// Relays until both directions have ended, the tunnel idles out, or it is cancelled; then closes
// both streams. Buffers start at buffer_size and grow to bulk_buffer_size for bulk transfers.
// `initial` (bytes the client pipelined after the CONNECT head) goes to upstream first. EOF from
// one side becomes a half-close of the other while the other direction goes on. Must run on a
// strand or a single-threaded io_context (both directions share the streams). Never throws.
asio::awaitable<RelayStats> relay(asio::ip::tcp::socket& client, asio::ip::tcp::socket& upstream,
                                  RelayOptions options = {},
                                  std::span<const std::byte> initial = {});

// The same for any pair of AsyncStreams (TLS streams), through fixed buffer_size buffers.
template <class ClientStream, class UpstreamStream>
asio::awaitable<RelayStats> relay(ClientStream& client, UpstreamStream& upstream,
                                  RelayOptions options = {},
                                  std::span<const std::byte> initial = {});

// ---- implementation ----------------------------------------------------------------------------

namespace detail {

enum class Direction { kClientToUpstream, kUpstreamToClient };

// The non-template state of one relay: counters, activity clock, the end reason, registration
// with RelayShutdown, and the idle watchdog.
class RelaySession {
 public:
  RelaySession(const RelayOptions& options, asio::any_io_executor executor,
               std::function<void()> close_streams);
  ~RelaySession();
  RelaySession(const RelaySession&) = delete;
  RelaySession& operator=(const RelaySession&) = delete;

  std::size_t buffer_size() const { return buffer_size_; }
  std::size_t bulk_buffer_size() const { return bulk_buffer_size_; }
  void moved(Direction direction, std::size_t bytes);
  void touch();
  // An operation on one side failed. Our own teardown's aborts are ignored; otherwise the first
  // error ends the relay (a reset peer cannot complete a half-closed exchange anyway).
  void io_error(bool client_side, const std::error_code& error);
  void end(RelayEnd reason);  // first reason wins; closes both streams
  bool ending() const { return ending_; }

  asio::awaitable<void> watchdog();
  RelayStats finish();  // closes both streams, fills the duration

 private:
  using Clock = std::chrono::steady_clock;

  asio::any_io_executor executor_;
  std::function<void()> close_streams_;
  std::chrono::milliseconds idle_timeout_;
  std::size_t buffer_size_;
  std::size_t bulk_buffer_size_;
  Clock::time_point start_;
  Clock::time_point last_activity_;
  RelayStats stats_;
  bool ending_ = false;
  bool closed_ = false;
  RelayShutdown* shutdown_;
  std::shared_ptr<RelayShutdown::Entry> registration_;
  uint64_t registration_id_ = 0;
};

// (pumps || watchdog) with exceptions turned into an end reason.
asio::awaitable<RelayStats> run_relay(RelaySession& session, asio::awaitable<void> pumps);
// What a relay that could not even start (allocation failure) reports.
RelayStats failed_relay_stats();

inline constexpr auto kRelayAsTuple = asio::experimental::as_tuple(asio::use_awaitable);

template <class From, class To>
asio::awaitable<void> pump(From& from, To& to, RelaySession& session, Direction direction,
                           std::vector<std::byte> initial) {
  const bool from_client = direction == Direction::kClientToUpstream;
  co_await asio::this_coro::throw_if_cancelled(false);
  try {
    if (!initial.empty()) {
      auto [error, written] =
          co_await RelayStreamTraits<To>::write(to, initial.data(), initial.size());
      session.moved(direction, written);
      if (error) {
        session.io_error(!from_client, error);
        co_return;
      }
    }
    const std::size_t size = session.buffer_size();
    std::unique_ptr<std::byte[]> buffer(new std::byte[size]);
    for (;;) {
      auto [read_error, count] =
          co_await RelayStreamTraits<From>::read_some(from, buffer.get(), size);
      if (count > 0) {
        session.touch();
        auto [write_error, written] =
            co_await RelayStreamTraits<To>::write(to, buffer.get(), count);
        session.moved(direction, written);
        if (write_error) {
          session.io_error(!from_client, write_error);
          co_return;
        }
      }
      if (RelayStreamTraits<From>::is_eof(read_error)) {
        if (!session.ending()) co_await RelayStreamTraits<To>::half_close(to);
        co_return;
      }
      if (read_error) {
        session.io_error(from_client, read_error);
        co_return;
      }
    }
  } catch (const std::exception&) {
    session.io_error(from_client, std::make_error_code(std::errc::not_enough_memory));
  }
}

}  // namespace detail

template <class ClientStream, class UpstreamStream>
asio::awaitable<RelayStats> relay(ClientStream& client, UpstreamStream& upstream,
                                  RelayOptions options, std::span<const std::byte> initial) {
  using asio::experimental::awaitable_operators::operator&&;
  co_await asio::this_coro::throw_if_cancelled(false);
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  auto close_both = [&client, &upstream] {
    RelayStreamTraits<ClientStream>::close(client);
    RelayStreamTraits<UpstreamStream>::close(upstream);
  };
  try {
    detail::RelaySession session(options, executor, close_both);
    co_return co_await detail::run_relay(
        session,
        detail::pump(client, upstream, session, detail::Direction::kClientToUpstream,
                     std::vector<std::byte>(initial.begin(), initial.end())) &&
            detail::pump(upstream, client, session, detail::Direction::kUpstreamToClient, {}));
  } catch (const std::exception&) {
    // Only allocation can fail before the relay runs.
  }
  close_both();
  co_return detail::failed_relay_stats();
}

}  // namespace openshell::proxy
