// The upstream dialer: validated addresses in order, a timer raced against each connect.
#include "openshell/proxy/dialer.hpp"

#include <algorithm>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <cstring>
#include <exception>
#include <utility>
#include <variant>

namespace openshell::proxy {
namespace {

using asio::ip::tcp;

constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);

std::string endpoint_text(const tcp::endpoint& endpoint) {
  const asio::ip::address address = endpoint.address();
  std::string text = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return text + ":" + std::to_string(endpoint.port());
}

DialFailure classify(const std::vector<DialAttempt>& attempts) {
  if (attempts.empty()) return DialFailure::kNoAddresses;
  const bool all_timed_out = std::all_of(attempts.begin(), attempts.end(),
                                         [](const DialAttempt& a) { return a.timed_out; });
  return all_timed_out ? DialFailure::kTimedOut : DialFailure::kRefused;
}

}  // namespace

std::string_view dial_failure_name(DialFailure failure) {
  switch (failure) {
    case DialFailure::kRefused:
      return "refused";
    case DialFailure::kTimedOut:
      return "timed out";
    case DialFailure::kNoAddresses:
      return "no addresses";
    case DialFailure::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string DialResult::describe() const {
  if (attempts.empty()) return "no addresses to connect to";
  std::string text;
  for (const DialAttempt& attempt : attempts) {
    if (!text.empty()) text += "; ";
    text += "connect to " + endpoint_text(attempt.endpoint) + ": ";
    if (attempt.timed_out) {
      text += "timed out";
    } else if (attempt.error) {
      text += attempt.error.message();
    } else {
      text += "connected";
    }
  }
  return text;
}

asio::awaitable<DialResult> dial(asio::any_io_executor executor,
                                 std::span<const tcp::endpoint> endpoints,
                                 std::chrono::milliseconds per_attempt_timeout) {
  using namespace asio::experimental::awaitable_operators;  // NOLINT(google-build-using-namespace)
  DialResult result;
  try {
    // Cancellation is reported as a value, never as an exception out of a nested co_await.
    co_await asio::this_coro::throw_if_cancelled(false);
    for (const tcp::endpoint& endpoint : endpoints) {
      if ((co_await asio::this_coro::cancellation_state).cancelled() !=
          asio::cancellation_type::none) {
        result.failure = DialFailure::kCancelled;
        co_return result;
      }
      tcp::socket socket(executor);
      asio::steady_timer timer(executor, per_attempt_timeout);
      DialAttempt attempt{endpoint, {}, false};

      // Whichever finishes first cancels the other; the group waits for both before resuming.
      auto winner =
          co_await (socket.async_connect(endpoint, kAsTuple) || timer.async_wait(kAsTuple));
      if (winner.index() == 0) {
        attempt.error = std::get<0>(std::get<0>(winner));
      } else {
        attempt.timed_out = true;
        attempt.error = asio::error::timed_out;
      }

      if (!attempt.error) {
        asio::error_code ignored;
        // Tunnels carry interactive protocols (TLS handshakes, SSH): never wait for Nagle.
        socket.set_option(tcp::no_delay(true), ignored);
        result.attempts.push_back(attempt);
        result.endpoint = endpoint;
        result.socket.emplace(std::move(socket));
        co_return result;
      }
      result.attempts.push_back(attempt);
      if (attempt.error == asio::error::operation_aborted) {
        result.failure = DialFailure::kCancelled;
        co_return result;
      }
      asio::error_code ignored;
      socket.close(ignored);
    }
    result.failure = classify(result.attempts);
  } catch (const std::exception&) {
    // Only allocation failure or a broken invariant in Asio can get here.
    result.socket.reset();
    result.failure = classify(result.attempts);
  }
  co_return result;
}

asio::ip::address to_asio_address(const policy::IpAddress& address) {
  if (address.v6) {
    asio::ip::address_v6::bytes_type bytes{};
    std::copy(address.bytes.begin(), address.bytes.end(), bytes.begin());
    return asio::ip::address_v6(bytes);
  }
  asio::ip::address_v4::bytes_type bytes{};
  std::copy_n(address.bytes.begin(), bytes.size(), bytes.begin());
  return asio::ip::address_v4(bytes);
}

policy::IpAddress to_ip_address(const asio::ip::address& address) {
  policy::IpAddress result;
  if (address.is_v6()) {
    const asio::ip::address_v6::bytes_type bytes = address.to_v6().to_bytes();
    result.v6 = true;
    std::copy(bytes.begin(), bytes.end(), result.bytes.begin());
  } else {
    const asio::ip::address_v4::bytes_type bytes = address.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), result.bytes.begin());
  }
  return result;
}

std::vector<tcp::endpoint> to_endpoints(std::span<const policy::IpAddress> addresses,
                                        uint16_t port) {
  std::vector<tcp::endpoint> endpoints;
  endpoints.reserve(addresses.size());
  for (const policy::IpAddress& address : addresses) {
    endpoints.emplace_back(to_asio_address(address), port);
  }
  return endpoints;
}

}  // namespace openshell::proxy
