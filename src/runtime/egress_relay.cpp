// The egress relay of `openshell run --network proxy:...`: accept in the sandbox's listener,
// identify the caller off the I/O thread, connect to the proxy, send the PROXY v2 header, relay.
#include "openshell/runtime/egress_relay.hpp"

#include <sys/socket.h>

// See proxy/relay.hpp: GCC 12 -O2 false -Wnull-dereference inside Asio's scheduler.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#pragma GCC diagnostic pop

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <exception>
#include <optional>
#include <thread>
#include <utility>
#include <variant>

#include "openshell/core/clock.hpp"
#include "openshell/core/proxy_protocol.hpp"
#include "openshell/runtime/identity.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {
namespace {

using asio::ip::tcp;
using UnixStream = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;

constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);
// Transient accept failures (EMFILE, ENOBUFS) back off instead of spinning (proxy-spec §8).
constexpr std::chrono::milliseconds kAcceptBackoffBase{100};
constexpr std::chrono::milliseconds kAcceptBackoffMax{5000};
// Identification is mostly procfs reads; two threads keep one slow first-time hash from
// delaying every other new connection.
constexpr std::size_t kIdentifyThreads = 2;
// RFC 1035 limit of a full domain name.
constexpr std::size_t kMaxHostNameSize = 253;

std::string endpoint_text(const tcp::endpoint& endpoint) {
  const asio::ip::address address = endpoint.address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

core::ProxyAddress proxy_address(const tcp::endpoint& endpoint) {
  core::ProxyAddress out;
  const asio::ip::address address = endpoint.address();
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.ip.begin());
  } else {
    const auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.ip.begin());
  }
  out.port = endpoint.port();
  return out;
}

// Bytes moved and the last time any moved, shared by both directions and the idle watchdog.
struct Activity {
  Clock::time_point last = Clock::now();
  uint64_t to_proxy = 0;
  uint64_t to_client = 0;
};

// Copies `from` to `to` through a fixed buffer, after writing `initial`. EOF becomes a
// half-close of `to` while the other direction goes on; an error ends both directions.
template <class From, class To>
asio::awaitable<void> pump(From& from, To& to, std::vector<uint8_t> initial, Activity& activity,
                           uint64_t& counter) {
  // Cancellation (idle timeout) arrives as an error code on the pending operation, not as an
  // exception out of the next co_await.
  co_await asio::this_coro::throw_if_cancelled(false);
  auto end_both = [&from, &to] {
    std::error_code ignored;
    from.close(ignored);
    to.close(ignored);
  };
  if (!initial.empty()) {
    auto [error, written] = co_await asio::async_write(to, asio::buffer(initial), kAsTuple);
    if (error) {
      end_both();
      co_return;
    }
  }
  std::vector<uint8_t> buffer(kEgressBufferSize);
  for (;;) {
    auto [read_error, count] = co_await from.async_read_some(asio::buffer(buffer), kAsTuple);
    if (count > 0) {
      activity.last = Clock::now();
      auto [write_error, written] =
          co_await asio::async_write(to, asio::buffer(buffer.data(), count), kAsTuple);
      counter += written;
      if (write_error) {
        end_both();
        co_return;
      }
      activity.last = Clock::now();
    }
    if (read_error == asio::error::eof) {
      std::error_code ignored;
      to.shutdown(asio::socket_base::shutdown_send, ignored);
      co_return;
    }
    if (read_error) {
      end_both();
      co_return;
    }
  }
}

// Returns once nothing has moved for `idle` (ending the relay), or when cancelled.
asio::awaitable<void> watchdog(Activity& activity, std::chrono::milliseconds idle) {
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_at(activity.last + idle);
    auto [error] = co_await timer.async_wait(kAsTuple);
    if (error || Clock::now() - activity.last >= idle) co_return;
  }
}

// `operation` raced against a timer; asio::error::timed_out when the timer wins.
asio::awaitable<std::error_code> within(std::chrono::milliseconds timeout,
                                        asio::awaitable<std::error_code> operation) {
  using asio::experimental::awaitable_operators::operator||;
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto winner = co_await (std::move(operation) || timer.async_wait(kAsTuple));
  if (winner.index() == 1) co_return asio::error::timed_out;
  co_return std::get<0>(winner);
}

// Name resolution goes through Asio's resolver thread; its getaddrinfo cannot be interrupted,
// so `within` bounds the connect but may wait out a hung resolver (IP literals resolve at once).
asio::awaitable<std::error_code> connect_tcp(tcp::socket& socket, const EgressTarget& target) {
  co_await asio::this_coro::throw_if_cancelled(false);
  tcp::resolver resolver(socket.get_executor());
  auto [resolve_error, results] = co_await resolver.async_resolve(
      target.host, std::to_string(target.port), tcp::resolver::numeric_service, kAsTuple);
  if (resolve_error) co_return resolve_error;
  // The timeout fired during a slow resolve: do not start a connect nobody waits for.
  if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) {
    co_return asio::error::operation_aborted;
  }
  auto [connect_error, endpoint] = co_await asio::async_connect(socket, results, kAsTuple);
  if (!connect_error) {
    std::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // TLS handshakes must not wait for Nagle
  }
  co_return connect_error;
}

asio::awaitable<std::error_code> connect_unix(UnixStream::socket& socket, const std::string& path) {
  co_await asio::this_coro::throw_if_cancelled(false);
  auto [error] = co_await socket.async_connect(UnixStream::endpoint(path), kAsTuple);
  co_return error;
}

bool valid_host_name(std::string_view host) {
  if (host.empty() || host.size() > kMaxHostNameSize) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
  });
}

}  // namespace

std::string EgressTarget::text() const {
  if (kind == Kind::kUnix) return "proxy:unix:" + path;
  const bool v6 = host.find(':') != std::string::npos;
  return "proxy:tcp://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<EgressTarget> parse_network_proxy(std::string_view text) {
  auto fail = [text](std::string_view why) -> Error {
    return make_error(Errc::kInvalidArgument,
                      "--network '" + std::string(text) + "': " + std::string(why) +
                          " (expected proxy:tcp://HOST:PORT or proxy:unix:/ABSOLUTE/PATH)");
  };
  constexpr std::string_view kUnixPrefix = "proxy:unix:";
  constexpr std::string_view kTcpPrefix = "proxy:tcp://";
  EgressTarget target;
  if (text.starts_with(kUnixPrefix)) {
    target.kind = EgressTarget::Kind::kUnix;
    target.path = std::string(text.substr(kUnixPrefix.size()));
    if (target.path.empty() || target.path.front() != '/') {
      return fail("the unix socket path must be absolute");
    }
    if (target.path.size() > kMaxUnixPathSize) {
      return fail("the unix socket path is longer than " + std::to_string(kMaxUnixPathSize) +
                  " bytes");
    }
    if (target.path.find('\0') != std::string::npos) return fail("NUL in the unix socket path");
    return target;
  }
  if (!text.starts_with(kTcpPrefix)) return fail("unknown form");

  const std::string_view rest = text.substr(kTcpPrefix.size());
  std::string_view host;
  std::string_view port_text;
  if (rest.starts_with('[')) {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return fail("unterminated '[' in the IPv6 address");
    host = rest.substr(1, close - 1);
    if (!rest.substr(close + 1).starts_with(':')) return fail("missing :PORT");
    port_text = rest.substr(close + 2);
    std::error_code error;
    asio::ip::make_address_v6(host, error);
    if (error) return fail("'" + std::string(host) + "' is not an IPv6 address");
  } else {
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return fail("missing :PORT");
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail("an IPv6 address must be in brackets, e.g. [::1]:3128");
    }
    if (!valid_host_name(host)) return fail("missing or invalid HOST");
  }
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port == 0 || port > 65535) {
    return fail("PORT must be a number from 1 to 65535");
  }
  target.kind = EgressTarget::Kind::kTcp;
  target.host = std::string(host);
  target.port = static_cast<uint16_t>(port);
  return target;
}

// ---- the relay --------------------------------------------------------------------------------

struct EgressRelay::Impl {
  Impl(EgressRelayOptions relay_options, core::Logger& log)
      : options(std::move(relay_options)),
        logger(log),
        identities(std::make_shared<IdentityResolver>(
            options.netns_pid, options.root_pid, options.socket_diag, options.connect_owners)) {}

  asio::awaitable<void> accept_loop(tcp::acceptor acceptor);
  asio::awaitable<void> serve(tcp::socket client);
  asio::awaitable<std::optional<Result<ProcessIdentity>>> identify(tcp::endpoint client,
                                                                   tcp::endpoint server);
  template <class Upstream>
  asio::awaitable<void> relay(tcp::socket& client, Upstream& upstream, std::vector<uint8_t> header,
                              const std::string& who);

  EgressRelayOptions options;
  core::Logger& logger;
  std::shared_ptr<IdentityResolver> identities;  // shared with identification jobs in flight
  // Optional so stop() can destroy them in order: the pool's queued jobs reference timers of
  // the io_context, and destroying the io_context closes every socket its coroutines hold.
  std::optional<asio::io_context> io{std::in_place, 1};
  std::optional<asio::thread_pool> pool{std::in_place, kIdentifyThreads};
  std::thread thread;
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};
  bool stopped = false;
};

asio::awaitable<void> EgressRelay::Impl::accept_loop(tcp::acceptor acceptor) {
  auto backoff = kAcceptBackoffBase;
  asio::steady_timer timer(acceptor.get_executor());
  for (;;) {
    auto [error, socket] = co_await acceptor.async_accept(kAsTuple);
    if (error == asio::error::operation_aborted) co_return;
    if (error) {
      logger.warn("egress relay: accept failed: {}; retrying in {} ms", error.message(),
                  backoff.count());
      timer.expires_after(backoff);
      co_await timer.async_wait(kAsTuple);
      backoff = std::min(backoff * 2, kAcceptBackoffMax);
      continue;
    }
    backoff = kAcceptBackoffBase;
    accepted.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

// Runs the blocking lookup on the pool and resumes here with its result, or with nullopt after
// the timeout (the lookup then finishes in the background and its result is dropped). The timer
// doubles as the wake-up: the pool posts the result back to this thread and cancels it.
asio::awaitable<std::optional<Result<ProcessIdentity>>> EgressRelay::Impl::identify(
    tcp::endpoint client, tcp::endpoint server) {
  struct Pending {
    explicit Pending(const asio::any_io_executor& executor) : timer(executor) {}
    asio::steady_timer timer;
    std::optional<Result<ProcessIdentity>> result;
  };
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  auto pending = std::make_shared<Pending>(executor);
  pending->timer.expires_after(options.identify_timeout);
  asio::post(*pool, [pending, executor, identities = identities, client, server]() mutable {
    Result<ProcessIdentity> result = make_error(Errc::kInternal, "identification failed");
    try {
      result = identities->identify(client, server);
    } catch (const std::exception& e) {  // allocation failure: fail closed, keep the pool alive
      result = make_error(Errc::kInternal, std::string("identification failed: ") + e.what());
    }
    asio::post(executor, [pending = std::move(pending), result = std::move(result)]() mutable {
      pending->result.emplace(std::move(result));
      pending->timer.cancel();
    });
  });
  co_await pending->timer.async_wait(kAsTuple);
  co_return std::move(pending->result);
}

template <class Upstream>
asio::awaitable<void> EgressRelay::Impl::relay(tcp::socket& client, Upstream& upstream,
                                               std::vector<uint8_t> header,
                                               const std::string& who) {
  using asio::experimental::awaitable_operators::operator&&;
  using asio::experimental::awaitable_operators::operator||;
  Activity activity;
  // NOLINTNEXTLINE(bugprone-use-after-move): clang-tidy misreads the coroutine frame's copy
  co_await ((pump(client, upstream, std::move(header), activity, activity.to_proxy) &&
             pump(upstream, client, {}, activity, activity.to_client)) ||
            watchdog(activity, options.idle_timeout));
  logger.debug("egress: {} closed ({} bytes to the proxy, {} back)", who, activity.to_proxy,
               activity.to_client);
}

asio::awaitable<void> EgressRelay::Impl::serve(tcp::socket client) {
  try {
    std::error_code error;
    const tcp::endpoint peer = client.remote_endpoint(error);
    const tcp::endpoint local = error ? tcp::endpoint() : client.local_endpoint(error);
    if (error) co_return;  // the client left before we looked
    const std::string who = endpoint_text(peer);

    // Identify first: nothing reaches the proxy for a connection without an owner.
    std::optional<Result<ProcessIdentity>> identity = co_await identify(peer, local);
    if (!identity || !identity->ok()) {
      refused.fetch_add(1, std::memory_order_relaxed);
      logger.warn("egress: refused {}: {}", who,
                  identity ? identity->error().message
                           : "identification timed out after " +
                                 std::to_string(options.identify_timeout.count()) + " ms");
      co_return;  // the client socket closes here
    }
    const ProcessIdentity& process = identity->value();

    core::ProxyHeader header;
    header.family = peer.address().is_v6() ? core::ProxyFamily::kTcp6 : core::ProxyFamily::kTcp4;
    header.source = proxy_address(peer);
    header.destination = proxy_address(local);
    header.pid = static_cast<uint32_t>(process.pid);
    header.exe_path = process.exe;
    header.exe_sha256 = process.exe_sha256;
    // The sandbox's init (openshell itself) is above the workload, never part of it.
    for (const AncestorIdentity& ancestor : process.ancestors) {
      if (ancestor.pid != options.root_pid) header.ancestors.push_back(ancestor.exe);
    }
    header.timestamp_ms = static_cast<uint64_t>(core::now_ms());
    auto wire = core::encode_proxy_header(header, options.identity_key);
    if (!wire) {
      refused.fetch_add(1, std::memory_order_relaxed);
      logger.warn("egress: refused {} (pid {} {}): {}", who, process.pid, process.exe,
                  wire.error().message);
      co_return;
    }
    logger.debug("egress: {} pid {} {} -> {}", who, process.pid, process.exe,
                 options.target.text());

    const asio::any_io_executor executor = client.get_executor();
    if (options.target.kind == EgressTarget::Kind::kUnix) {
      UnixStream::socket upstream(executor);
      const std::error_code connect_error =
          co_await within(options.connect_timeout, connect_unix(upstream, options.target.path));
      if (connect_error) {
        logger.warn("egress: {}: cannot connect to {}: {}", who, options.target.text(),
                    connect_error.message());
        co_return;
      }
      co_await relay(client, upstream, std::move(*wire), who);
    } else {
      tcp::socket upstream(executor);
      const std::error_code connect_error =
          co_await within(options.connect_timeout, connect_tcp(upstream, options.target));
      if (connect_error) {
        logger.warn("egress: {}: cannot connect to {}: {}", who, options.target.text(),
                    connect_error.message());
        co_return;
      }
      co_await relay(client, upstream, std::move(*wire), who);
    }
  } catch (const std::exception& e) {
    // Only allocation failure or a broken invariant in Asio gets here; the connection is lost.
    logger.error("egress: connection dropped: {}", e.what());
  }
}

EgressRelay::EgressRelay(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EgressRelay::~EgressRelay() {
  stop();
}

Result<std::unique_ptr<EgressRelay>> EgressRelay::start(int listen_fd, EgressRelayOptions options,
                                                        core::Logger& log) {
  UniqueFd owned(listen_fd);  // closed on every failure below
  if (!owned) return make_error(Errc::kInvalidArgument, "egress relay: no listening socket");
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  int listening = 0;
  socklen_t listening_size = sizeof listening;
  if (::getsockname(owned.get(), reinterpret_cast<sockaddr*>(&address), &size) != 0 ||
      ::getsockopt(owned.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_size) != 0) {
    return Error::from_errno("egress relay: getsockname/getsockopt");
  }
  if ((address.ss_family != AF_INET && address.ss_family != AF_INET6) || listening == 0) {
    return make_error(Errc::kInvalidArgument,
                      "egress relay: the listener is not a listening TCP socket");
  }

  auto impl = std::make_unique<Impl>(std::move(options), log);
  tcp::acceptor acceptor(*impl->io);
  std::error_code error;
  acceptor.assign(address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), owned.get(), error);
  if (error) {
    return make_error(Errc::kIo, "egress relay: cannot use the listener: " + error.message());
  }
  owned.release();  // the acceptor owns it now
  const tcp::endpoint listening_on = acceptor.local_endpoint(error);

  const EgressRelayOptions& opts = impl->options;
  if (opts.target.kind == EgressTarget::Kind::kTcp && opts.identity_key.empty()) {
    log.warn(
        "egress relay: identity is sent to {} without an HMAC key: anyone who can reach the "
        "proxy can claim any binary (use --identity-key-file)",
        opts.target.text());
  }
  log.info("egress relay: {} -> {} (identity HMAC {})", endpoint_text(listening_on),
           opts.target.text(), opts.identity_key.empty() ? "off" : "on");

  Impl* raw = impl.get();
  asio::co_spawn(*raw->io, raw->accept_loop(std::move(acceptor)), asio::detached);
  raw->thread = std::thread([raw] {
    for (;;) {
      try {
        raw->io->run();
        return;
      } catch (const std::exception& e) {
        raw->logger.error("egress relay: {}", e.what());  // keep serving the others
      }
    }
  });
  return std::unique_ptr<EgressRelay>(new EgressRelay(std::move(impl)));
}

void EgressRelay::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->io->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Identification jobs still running finish (procfs reads, bounded); queued ones are dropped.
  impl_->pool->stop();
  impl_->pool->join();
  impl_->pool.reset();
  impl_->io.reset();  // destroys the suspended coroutines: the listener and all sockets close
  impl_->logger.info("egress relay: stopped");
}

uint64_t EgressRelay::accepted() const {
  return impl_->accepted.load(std::memory_order_relaxed);
}

uint64_t EgressRelay::refused() const {
  return impl_->refused.load(std::memory_order_relaxed);
}

}  // namespace openshell::runtime
