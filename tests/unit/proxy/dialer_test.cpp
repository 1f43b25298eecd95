// Dialer: addresses tried in order, a refusing one skipped, timeouts (a listener whose accept
// queue is full drops SYNs), cancellation, TCP_NODELAY. Loopback only.
#include "openshell/proxy/dialer.hpp"

#include <sys/socket.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "io_thread.hpp"

namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;
using openshell::proxy::DialFailure;
using openshell::proxy::DialResult;

using openshell::test::IoThread;

const asio::ip::address kLoopback4 = asio::ip::make_address("127.0.0.1");
const asio::ip::address kLoopback6 = asio::ip::make_address("::1");

bool have_ipv6_loopback() {
  asio::io_context io;
  tcp::acceptor acceptor(io);
  asio::error_code error;
  acceptor.open(tcp::v6(), error);
  if (!error) acceptor.bind(tcp::endpoint(kLoopback6, 0), error);
  return !error;
}

// A loopback port nothing listens on: bound, then released.
tcp::endpoint closed_port(asio::io_context& io, const asio::ip::address& address) {
  tcp::acceptor probe(io, tcp::endpoint(address, 0));
  tcp::endpoint endpoint = probe.local_endpoint();
  probe.close();
  return endpoint;
}

// A listener that never accepts and whose accept queue is full: further SYNs are dropped, so a
// connect to it hangs until our timeout (Linux drops, rather than refuses, on queue overflow).
struct BlackHole {
  tcp::acceptor acceptor;
  std::vector<std::unique_ptr<tcp::socket>> fillers;

  BlackHole(asio::io_context& io, const asio::ip::address& address)
      : acceptor(io, tcp::endpoint(address, 0)) {
    acceptor.listen(0);
    for (int i = 0; i < 4; ++i) {
      auto socket = std::make_unique<tcp::socket>(io);
      socket->open(address.is_v6() ? tcp::v6() : tcp::v4());
      socket->native_non_blocking(true);
      // Asio's synchronous connect would wait for the handshake; this one must not.
      const tcp::endpoint target = acceptor.local_endpoint();
      (void)::connect(socket->native_handle(), target.data(),
                      static_cast<socklen_t>(target.size()));
      fillers.push_back(std::move(socket));
    }
    std::this_thread::sleep_for(20ms);  // let the handshakes that fit complete
  }
  tcp::endpoint endpoint() const { return acceptor.local_endpoint(); }
};

DialResult run_dial(asio::io_context& io, std::vector<tcp::endpoint> endpoints,
                    std::chrono::milliseconds timeout) {
  auto future = asio::co_spawn(
      io,
      [&io, endpoints = std::move(endpoints), timeout]() -> asio::awaitable<DialResult> {
        co_return co_await openshell::proxy::dial(io.get_executor(), endpoints, timeout);
      },
      asio::use_future);
  REQUIRE(future.wait_for(20s) == std::future_status::ready);
  return future.get();
}

}  // namespace

TEST_CASE("dialer: connects to the first address", "[dialer]") {
  IoThread io;
  tcp::acceptor listener(io.io(), tcp::endpoint(kLoopback4, 0));
  DialResult result = run_dial(io.io(), {listener.local_endpoint()}, 2s);
  REQUIRE(result.ok());
  CHECK(result.endpoint == listener.local_endpoint());
  REQUIRE(result.attempts.size() == 1);
  CHECK_FALSE(result.attempts[0].error);
  tcp::no_delay no_delay;
  result.socket->get_option(no_delay);
  CHECK(no_delay.value());
  CHECK(result.socket->remote_endpoint() == listener.local_endpoint());
  tcp::socket accepted(io.io());
  listener.accept(accepted);  // the connection is real
  CHECK(accepted.remote_endpoint() == result.socket->local_endpoint());
}

TEST_CASE("dialer: skips a refusing address and uses the next", "[dialer]") {
  IoThread io;
  tcp::acceptor listener(io.io(), tcp::endpoint(kLoopback4, 0));
  const tcp::endpoint refusing = closed_port(io.io(), kLoopback4);
  DialResult result = run_dial(io.io(), {refusing, listener.local_endpoint()}, 2s);
  REQUIRE(result.ok());
  CHECK(result.endpoint == listener.local_endpoint());
  REQUIRE(result.attempts.size() == 2);
  CHECK(result.attempts[0].endpoint == refusing);
  CHECK(result.attempts[0].error == asio::error::connection_refused);
  CHECK_FALSE(result.attempts[0].timed_out);
  CHECK_FALSE(result.attempts[1].error);
}

TEST_CASE("dialer: `localhost` giving ::1 first falls back to 127.0.0.1", "[dialer]") {
  if (!have_ipv6_loopback()) {
    WARN("no IPv6 loopback here; skipped");
    return;
  }
  IoThread io;
  tcp::acceptor listener(io.io(), tcp::endpoint(kLoopback4, 0));
  const tcp::endpoint v6(kLoopback6, listener.local_endpoint().port());  // nobody on ::1
  DialResult result = run_dial(io.io(), {v6, listener.local_endpoint()}, 2s);
  REQUIRE(result.ok());
  CHECK(result.endpoint == listener.local_endpoint());
  CHECK(result.attempts.size() == 2);
}

TEST_CASE("dialer: every address refused", "[dialer]") {
  IoThread io;
  std::vector<tcp::endpoint> endpoints{closed_port(io.io(), kLoopback4),
                                       closed_port(io.io(), kLoopback4)};
  if (have_ipv6_loopback()) endpoints.push_back(closed_port(io.io(), kLoopback6));
  DialResult result = run_dial(io.io(), endpoints, 2s);
  REQUIRE_FALSE(result.ok());
  CHECK(result.failure == DialFailure::kRefused);
  CHECK(result.attempts.size() == endpoints.size());
  CHECK(result.describe().find("connect to 127.0.0.1:") == 0);
  CHECK(openshell::proxy::dial_failure_name(result.failure) == "refused");
}

TEST_CASE("dialer: nothing to dial", "[dialer]") {
  IoThread io;
  DialResult result = run_dial(io.io(), {}, 1s);
  REQUIRE_FALSE(result.ok());
  CHECK(result.failure == DialFailure::kNoAddresses);
  CHECK(result.describe() == "no addresses to connect to");
}

TEST_CASE("dialer: an unanswered SYN times out", "[dialer]") {
  IoThread io;
  BlackHole hole(io.io(), kLoopback4);
  const auto begin = std::chrono::steady_clock::now();
  DialResult result = run_dial(io.io(), {hole.endpoint()}, 200ms);
  const auto elapsed = std::chrono::steady_clock::now() - begin;
  REQUIRE_FALSE(result.ok());
  CHECK(result.failure == DialFailure::kTimedOut);
  REQUIRE(result.attempts.size() == 1);
  CHECK(result.attempts[0].timed_out);
  CHECK(elapsed >= 190ms);
  CHECK(elapsed < 3s);
  CHECK(result.describe().find(": timed out") != std::string::npos);
}

TEST_CASE("dialer: a timed-out address is followed by the next", "[dialer]") {
  IoThread io;
  BlackHole hole(io.io(), kLoopback4);
  tcp::acceptor listener(io.io(), tcp::endpoint(kLoopback4, 0));
  DialResult result = run_dial(io.io(), {hole.endpoint(), listener.local_endpoint()}, 150ms);
  REQUIRE(result.ok());
  CHECK(result.endpoint == listener.local_endpoint());
  REQUIRE(result.attempts.size() == 2);
  CHECK(result.attempts[0].timed_out);
}

TEST_CASE("dialer: refused plus timed out is reported as refused", "[dialer]") {
  IoThread io;
  BlackHole hole(io.io(), kLoopback4);
  DialResult result = run_dial(io.io(), {hole.endpoint(), closed_port(io.io(), kLoopback4)}, 150ms);
  REQUIRE_FALSE(result.ok());
  CHECK(result.failure == DialFailure::kRefused);
}

TEST_CASE("dialer: cancellation ends a hanging dial", "[dialer]") {
  IoThread io;
  BlackHole hole(io.io(), kLoopback4);
  asio::cancellation_signal signal;
  auto future = asio::co_spawn(
      io.io(),
      [&io, endpoint = hole.endpoint()]() -> asio::awaitable<DialResult> {
        const std::vector<tcp::endpoint> endpoints{endpoint, endpoint};
        co_return co_await openshell::proxy::dial(io.io().get_executor(), endpoints, 30s);
      },
      asio::bind_cancellation_slot(signal.slot(), asio::use_future));
  std::this_thread::sleep_for(100ms);
  asio::post(io.io(), [&signal] { signal.emit(asio::cancellation_type::terminal); });
  REQUIRE(future.wait_for(5s) == std::future_status::ready);
  DialResult result = future.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.failure == DialFailure::kCancelled);
  CHECK(result.attempts.size() == 1);  // the second address was never tried
}

TEST_CASE("dialer: address conversions", "[dialer]") {
  using openshell::policy::IpAddress;
  const std::vector<IpAddress> addresses{*IpAddress::parse("127.0.0.1"), *IpAddress::parse("::1"),
                                         *IpAddress::parse("::ffff:127.0.0.2")};
  const std::vector<tcp::endpoint> endpoints = openshell::proxy::to_endpoints(addresses, 8443);
  REQUIRE(endpoints.size() == 3);
  CHECK(endpoints[0] == tcp::endpoint(kLoopback4, 8443));
  CHECK(endpoints[1] == tcp::endpoint(kLoopback6, 8443));
  CHECK(endpoints[2].address() == asio::ip::make_address("::ffff:127.0.0.2"));
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    CHECK(openshell::proxy::to_ip_address(endpoints[i].address()) == addresses[i]);
  }
}
