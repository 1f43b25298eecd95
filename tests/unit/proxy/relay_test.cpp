// Relay: data both ways, pipelined initial bytes, half-close, idle timeout, byte counts, bounded
// memory under a slow reader, errors, external shutdown and cancellation; the plain-TCP path and
// the AsyncStream template, plus a non-socket stream. Loopback sockets only.
#include "openshell/proxy/relay.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <utility>

#include "io_thread.hpp"

namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;
using openshell::proxy::RelayEnd;
using openshell::proxy::RelayOptions;
using openshell::proxy::RelayStats;

// The proxy's main ignores SIGPIPE (BUILD-NOTES §9.6); so must a test that writes to dead peers.
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

using openshell::test::IoThread;

// Connected loopback pair: `near` on one context, `far` on another. Buffer sizes (if given) are
// set before the handshake so the advertised window honours them.
struct Pair {
  tcp::socket near;
  tcp::socket far;
};

Pair connected(asio::io_context& near_io, asio::io_context& far_io, int buffer_bytes = 0) {
  tcp::acceptor acceptor(far_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket near(near_io);
  near.open(tcp::v4());
  if (buffer_bytes > 0) {
    acceptor.set_option(asio::socket_base::receive_buffer_size(buffer_bytes));
    acceptor.set_option(asio::socket_base::send_buffer_size(buffer_bytes));
    near.set_option(asio::socket_base::receive_buffer_size(buffer_bytes));
    near.set_option(asio::socket_base::send_buffer_size(buffer_bytes));
  }
  near.connect(acceptor.local_endpoint());
  tcp::socket far(far_io);
  acceptor.accept(far);
  return Pair{std::move(near), std::move(far)};
}

// Test-side I/O straight on the descriptors, every wait bounded.
bool wait_fd(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

std::string recv_exact(tcp::socket& socket, std::size_t count,
                       std::chrono::milliseconds timeout = 5s) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[65536];
  while (out.size() < count) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms || !wait_fd(socket.native_handle(), POLLIN, left)) break;
    const ssize_t n = ::recv(socket.native_handle(), buffer,
                             std::min(sizeof buffer, count - out.size()), MSG_DONTWAIT);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  return out;
}

// True when the peer's FIN (or a reset) arrives within the timeout with no further data.
bool sees_end(tcp::socket& socket, std::chrono::milliseconds timeout = 5s) {
  if (!wait_fd(socket.native_handle(), POLLIN, timeout)) return false;
  char byte;
  return ::recv(socket.native_handle(), &byte, 1, MSG_DONTWAIT) <= 0;
}

void send_all(tcp::socket& socket, std::string_view data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    REQUIRE(wait_fd(socket.native_handle(), POLLOUT, 5s));
    const ssize_t n = ::send(socket.native_handle(), data.data() + sent, data.size() - sent,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) continue;
    REQUIRE(n > 0);
    sent += static_cast<std::size_t>(n);
  }
}

std::string pattern(std::size_t size, unsigned seed) {
  std::string data(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return data;
}

// A relay under test: client_peer ↔ [client | relay | upstream] ↔ upstream_peer.
struct Tunnel {
  IoThread relay_io;
  asio::io_context test_io;  // never run: the test side only makes synchronous calls
  Pair client_side;          // near = client_peer (test), far = client (relay)
  Pair upstream_side;        // near = upstream (relay), far = upstream_peer (test)
  std::future<RelayStats> done;

  explicit Tunnel(int buffer_bytes = 0)
      : client_side(connected(test_io, relay_io.io(), buffer_bytes)),
        upstream_side(connected(relay_io.io(), test_io, buffer_bytes)) {}

  tcp::socket& client_peer() { return client_side.near; }
  tcp::socket& upstream_peer() { return upstream_side.far; }

  // `generic`: through the AsyncStream template instead of the plain-TCP fast path.
  void start(bool generic, RelayOptions options = {}, std::string initial = {},
             asio::cancellation_slot slot = {}) {
    done = asio::co_spawn(
        relay_io.io(),
        [this, generic, options, initial = std::move(initial)]() -> asio::awaitable<RelayStats> {
          const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(initial.data()),
                                                 initial.size());
          if (generic) {
            co_return co_await openshell::proxy::relay<tcp::socket, tcp::socket>(
                client_side.far, upstream_side.near, options, bytes);
          }
          co_return co_await openshell::proxy::relay(client_side.far, upstream_side.near, options,
                                                     bytes);
        },
        asio::bind_cancellation_slot(slot, asio::use_future));
  }

  RelayStats finish(std::chrono::milliseconds timeout = 10s) {
    REQUIRE(done.wait_for(timeout) == std::future_status::ready);
    return done.get();
  }
};

}  // namespace

TEST_CASE("relay: bytes both ways, half-close, counters", "[relay]") {
  const bool generic = GENERATE(false, true);
  INFO("template path: " << generic);
  Tunnel t;
  t.start(generic);

  send_all(t.client_peer(), "hello");
  CHECK(recv_exact(t.upstream_peer(), 5) == "hello");
  send_all(t.upstream_peer(), "world");
  CHECK(recv_exact(t.client_peer(), 5) == "world");

  // Client is done sending: upstream sees EOF, but can still answer.
  t.client_peer().shutdown(tcp::socket::shutdown_send);
  CHECK(sees_end(t.upstream_peer()));
  send_all(t.upstream_peer(), "late answer");
  CHECK(recv_exact(t.client_peer(), 11) == "late answer");
  CHECK(t.done.wait_for(50ms) == std::future_status::timeout);  // still relaying that way

  t.upstream_peer().shutdown(tcp::socket::shutdown_send);
  CHECK(sees_end(t.client_peer()));
  RelayStats stats = t.finish();
  CHECK(stats.end == RelayEnd::kCompleted);
  CHECK(stats.client_to_upstream == 5);
  CHECK(stats.upstream_to_client == 16);
  CHECK(stats.duration > 0ms);
  CHECK_FALSE(stats.error);
}

TEST_CASE("relay: upstream closing first is passed on the same way", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  t.start(generic);
  send_all(t.upstream_peer(), "banner");
  t.upstream_peer().shutdown(tcp::socket::shutdown_send);
  CHECK(recv_exact(t.client_peer(), 6) == "banner");
  CHECK(sees_end(t.client_peer()));
  send_all(t.client_peer(), "bye");
  CHECK(recv_exact(t.upstream_peer(), 3) == "bye");
  t.client_peer().shutdown(tcp::socket::shutdown_send);
  RelayStats stats = t.finish();
  CHECK(stats.end == RelayEnd::kCompleted);
  CHECK(stats.client_to_upstream == 3);
  CHECK(stats.upstream_to_client == 6);
}

TEST_CASE("relay: pipelined initial bytes go first", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  send_all(t.client_peer(), " and then more");  // already waiting in the socket
  t.start(generic, {}, "\x16\x03\x01 initial");
  CHECK(recv_exact(t.upstream_peer(), 25) == "\x16\x03\x01 initial and then more");
  t.client_peer().shutdown(tcp::socket::shutdown_send);
  t.upstream_peer().shutdown(tcp::socket::shutdown_send);
  RelayStats stats = t.finish();
  CHECK(stats.client_to_upstream == 25);
}

TEST_CASE("relay: idle timeout closes both sides", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  RelayOptions options;
  options.idle_timeout = 200ms;
  const auto begin = std::chrono::steady_clock::now();
  t.start(generic, options);
  RelayStats stats = t.finish(5s);
  const auto elapsed = std::chrono::steady_clock::now() - begin;
  CHECK(stats.end == RelayEnd::kIdleTimeout);
  CHECK(elapsed >= 190ms);
  CHECK(elapsed < 2s);
  CHECK(sees_end(t.client_peer()));
  CHECK(sees_end(t.upstream_peer()));
}

TEST_CASE("relay: traffic in either direction keeps a tunnel alive", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  RelayOptions options;
  options.idle_timeout = 300ms;
  t.start(generic, options);
  for (int i = 0; i < 8; ++i) {  // 8 × 100 ms: well past one idle period
    std::this_thread::sleep_for(100ms);
    if (i % 2 == 0) {
      send_all(t.client_peer(), "x");
      CHECK(recv_exact(t.upstream_peer(), 1) == "x");
    } else {
      send_all(t.upstream_peer(), "y");
      CHECK(recv_exact(t.client_peer(), 1) == "y");
    }
  }
  CHECK(t.done.wait_for(0ms) == std::future_status::timeout);
  RelayStats stats = t.finish(3s);  // now idle
  CHECK(stats.end == RelayEnd::kIdleTimeout);
  CHECK(stats.client_to_upstream == 4);
  CHECK(stats.upstream_to_client == 4);
}

TEST_CASE("relay: bulk data both ways at once", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  t.start(generic);
  const std::string up = pattern(8 << 20, 1);
  const std::string down = pattern(6 << 20, 2);
  std::string got_up;
  std::string got_down;
  std::thread a([&] { send_all(t.client_peer(), up); });
  std::thread b([&] { send_all(t.upstream_peer(), down); });
  std::thread c([&] { got_up = recv_exact(t.upstream_peer(), up.size(), 30s); });
  std::thread d([&] { got_down = recv_exact(t.client_peer(), down.size(), 30s); });
  a.join();
  b.join();
  c.join();
  d.join();
  CHECK(got_up.size() == up.size());
  CHECK(got_up == up);
  CHECK(got_down.size() == down.size());
  CHECK(got_down == down);
  t.client_peer().shutdown(tcp::socket::shutdown_send);
  t.upstream_peer().shutdown(tcp::socket::shutdown_send);
  RelayStats stats = t.finish();
  CHECK(stats.end == RelayEnd::kCompleted);
  CHECK(stats.client_to_upstream == up.size());
  CHECK(stats.upstream_to_client == down.size());
}

TEST_CASE("relay: a slow reader stalls the writer instead of growing memory", "[relay]") {
  const bool generic = GENERATE(false, true);
  constexpr int kSocketBuffer = 32 * 1024;  // the kernel doubles it
  Tunnel t(kSocketBuffer);
  t.start(generic);

  // Write until the writer has been blocked for a while: the upstream peer reads nothing.
  const std::string chunk = pattern(std::size_t{64} * 1024, 3);
  std::size_t accepted = 0;
  auto last_progress = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - last_progress < 300ms && accepted < (64u << 20)) {
    const ssize_t n = ::send(t.client_peer().native_handle(), chunk.data(), chunk.size(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      accepted += static_cast<std::size_t>(n);
      last_progress = std::chrono::steady_clock::now();
    } else {
      REQUIRE(errno == EAGAIN);
      wait_fd(t.client_peer().native_handle(), POLLOUT, 50ms);
    }
  }
  // Four socket buffers of 64 KiB plus the relay's own 16 KiB, with room for skb accounting:
  // an unbounded relay would have swallowed all 64 MiB.
  INFO("bytes accepted before the writer stalled: " << accepted);
  CHECK(accepted < std::size_t{1024} * 1024);

  // Nothing was lost: once the reader drains, every byte arrives.
  t.client_peer().shutdown(tcp::socket::shutdown_send);
  const std::string got = recv_exact(t.upstream_peer(), accepted, 10s);
  CHECK(got.size() == accepted);
  CHECK(sees_end(t.upstream_peer()));
  t.upstream_peer().shutdown(tcp::socket::shutdown_send);
  RelayStats stats = t.finish();
  CHECK(stats.client_to_upstream == accepted);
}

TEST_CASE("relay: an upstream reset ends the relay with an error", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  t.start(generic);
  send_all(t.client_peer(), "ping");
  CHECK(recv_exact(t.upstream_peer(), 4) == "ping");
  t.upstream_peer().set_option(asio::socket_base::linger(true, 0));
  t.upstream_peer().close();  // RST
  RelayStats stats = t.finish();
  CHECK(stats.end == RelayEnd::kUpstreamError);
  CHECK(stats.error == asio::error::connection_reset);
  CHECK(sees_end(t.client_peer()));
}

TEST_CASE("relay: a client reset ends the relay with an error", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  t.start(generic);
  t.client_peer().set_option(asio::socket_base::linger(true, 0));
  t.client_peer().close();
  RelayStats stats = t.finish();
  CHECK(stats.end == RelayEnd::kClientError);
  CHECK(sees_end(t.upstream_peer()));
}

TEST_CASE("relay: RelayShutdown ends live tunnels and refuses new ones", "[relay]") {
  const bool generic = GENERATE(false, true);
  openshell::proxy::RelayShutdown shutdown;
  RelayOptions options;
  options.shutdown = &shutdown;
  Tunnel t;
  t.start(generic, options);
  send_all(t.client_peer(), "x");
  CHECK(recv_exact(t.upstream_peer(), 1) == "x");
  CHECK(shutdown.active() == 1);
  shutdown.end_all();
  RelayStats stats = t.finish(2s);
  CHECK(stats.end == RelayEnd::kCancelled);
  CHECK(stats.client_to_upstream == 1);
  CHECK(shutdown.active() == 0);
  CHECK(sees_end(t.client_peer()));
  CHECK(sees_end(t.upstream_peer()));

  Tunnel late;
  late.start(generic, options);
  CHECK(late.finish(2s).end == RelayEnd::kCancelled);
  CHECK(sees_end(late.client_peer()));
}

TEST_CASE("relay: the awaiting coroutine's cancellation ends it", "[relay]") {
  const bool generic = GENERATE(false, true);
  Tunnel t;
  asio::cancellation_signal signal;
  t.start(generic, {}, {}, signal.slot());
  send_all(t.client_peer(), "abc");
  CHECK(recv_exact(t.upstream_peer(), 3) == "abc");
  asio::post(t.relay_io.io(), [&signal] { signal.emit(asio::cancellation_type::terminal); });
  RelayStats stats = t.finish(2s);
  CHECK(stats.end == RelayEnd::kCancelled);
  CHECK(sees_end(t.client_peer()));
}

namespace {

// Any AsyncStream that is not a plain socket takes the template path (as TLS streams will).
class CountingStream {
 public:
  using executor_type = tcp::socket::executor_type;
  using lowest_layer_type = tcp::socket::lowest_layer_type;

  explicit CountingStream(tcp::socket& socket) : socket_(socket) {}
  executor_type get_executor() { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    ++reads;
    return socket_.async_read_some(buffers, std::forward<Token>(token));
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    ++writes;
    return socket_.async_write_some(buffers, std::forward<Token>(token));
  }

  int reads = 0;
  int writes = 0;

 private:
  tcp::socket& socket_;
};

}  // namespace

TEST_CASE("relay: template path for other AsyncStreams", "[relay]") {
  IoThread relay_io;
  asio::io_context test_io;
  Pair client_side = connected(test_io, relay_io.io());
  Pair upstream_side = connected(relay_io.io(), test_io);
  CountingStream client(client_side.far);
  CountingStream upstream(upstream_side.near);
  RelayOptions options;
  options.buffer_size = 4096;
  auto done = asio::co_spawn(
      relay_io.io(),
      [&]() -> asio::awaitable<RelayStats> {
        co_return co_await openshell::proxy::relay(client, upstream, options);
      },
      asio::use_future);
  const std::string data = pattern(100000, 4);
  std::thread writer([&] { send_all(client_side.near, data); });
  CHECK(recv_exact(upstream_side.far, data.size()) == data);
  writer.join();
  send_all(upstream_side.far, "reply");
  CHECK(recv_exact(client_side.near, 5) == "reply");
  client_side.near.shutdown(tcp::socket::shutdown_send);
  upstream_side.far.shutdown(tcp::socket::shutdown_send);
  REQUIRE(done.wait_for(5s) == std::future_status::ready);
  RelayStats stats = done.get();
  CHECK(stats.end == RelayEnd::kCompleted);
  CHECK(stats.client_to_upstream == data.size());
  CHECK(client.reads >= static_cast<int>(data.size() / 4096));  // bounded 4 KiB reads
  CHECK(upstream.writes > 0);
  CHECK(openshell::proxy::relay_end_name(stats.end) == "completed");
}
