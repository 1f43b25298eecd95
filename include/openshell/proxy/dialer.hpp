// Connecting to an upstream (spec §2.8 step 13): the SSRF-validated addresses, tried in order,
// each attempt bounded by a timeout. The name is never resolved again here.
#pragma once

// GCC 12 at -O2 reports a false -Wnull-dereference inside Asio 1.22's scheduler, inlined from
// its epoll reactor. The warning takes the state at the header's own location, so silencing it
// around the first inclusion of Asio keeps the warning wall clean without hiding our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "openshell/policy/ip_class.hpp"

namespace openshell::proxy {

// One unresponsive address (a SYN into a black hole) must not hold a CONNECT for the kernel's
// ~2 minutes of SYN retries; 10 s still covers a slow, lossy path.
inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{10000};

// Why no address could be reached; the caller answers 502 for kRefused, 504 for kTimedOut.
enum class DialFailure {
  kRefused,      // some attempt failed outright: refused, unreachable, reset, …
  kTimedOut,     // every attempt ran into its timeout
  kNoAddresses,  // nothing to try
  kCancelled,    // the awaiting coroutine was cancelled (server shutdown)
};
std::string_view dial_failure_name(DialFailure failure);

struct DialAttempt {
  asio::ip::tcp::endpoint endpoint;
  std::error_code error;  // empty on the attempt that connected
  bool timed_out = false;
};

struct DialResult {
  // Connected, TCP_NODELAY set; empty on failure.
  std::optional<asio::ip::tcp::socket> socket;
  // The address that answered (valid only on success).
  asio::ip::tcp::endpoint endpoint;
  DialFailure failure = DialFailure::kNoAddresses;  // meaningful only on failure
  std::vector<DialAttempt> attempts;                // every attempt, in order

  bool ok() const { return socket.has_value(); }
  // "connect to 127.0.0.1:1: Connection refused; connect to [::1]:1: timed out": for logs.
  std::string describe() const;
};

// Tries each endpoint in order until one connects. Never throws; honours the awaiting
// coroutine's cancellation.
asio::awaitable<DialResult> dial(
    asio::any_io_executor executor, std::span<const asio::ip::tcp::endpoint> endpoints,
    std::chrono::milliseconds per_attempt_timeout = kDefaultConnectTimeout);

// Conversions between the policy layer's addresses and Asio's endpoints.
asio::ip::address to_asio_address(const policy::IpAddress& address);
policy::IpAddress to_ip_address(const asio::ip::address& address);
std::vector<asio::ip::tcp::endpoint> to_endpoints(std::span<const policy::IpAddress> addresses,
                                                  uint16_t port);

}  // namespace openshell::proxy
