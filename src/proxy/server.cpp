// Listeners and lifecycle of the proxy: one strand per connection on a shared pool of worker
// threads, a connection cap answered with 503, denial summaries every window, graceful drain.
#include "openshell/proxy/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <thread>

#include "context.hpp"
#include "io.hpp"
#include "openshell/core/events.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/inference_routes.hpp"

namespace openshell::proxy {

namespace {

using asio::ip::tcp;
using UnixStream = asio::local::stream_protocol;

// Retrying accept after an error (EMFILE, ENOBUFS …): back off instead of spinning (spec §8).
constexpr std::chrono::milliseconds kAcceptBackoffBase{100};
constexpr std::chrono::milliseconds kAcceptBackoffMax{5000};
// How often shutdown looks whether the last connection has finished.
constexpr std::chrono::milliseconds kDrainPoll{20};
// Default listen port (the conventional proxy port, and what sandboxes are pointed at).
constexpr uint16_t kDefaultListenPort = 3128;
constexpr std::string_view kUnixPrefix = "unix:";
// sun_path holds the path and its terminating NUL.
constexpr size_t kMaxUnixPathSize = sizeof(sockaddr_un::sun_path) - 1;

std::string endpoint_text(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  const std::string ip = address.to_string();
  return (address.is_v6() ? "[" + ip + "]" : ip) + ":" + std::to_string(endpoint.port());
}

// A unix:PATH listener's socket file: what to remove at shutdown, and only if it is still ours.
struct UnixSocketFile {
  std::string path;
  dev_t device = 0;
  ino_t inode = 0;
};

// Makes `path` free for a new listener. A socket file outlives the process that bound it, so
// one nothing accepts on is stale and goes; a live socket (another proxy) or any other kind of
// file is an error naming the path. (A proxy starting on the same path at the same instant can
// still race this; the operator gives each proxy its own path.)
Result<void> clear_stale_socket(asio::io_context& io, const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) != 0) {
    if (errno == ENOENT) return {};
    return Error::from_errno("lstat " + path);
  }
  if (!S_ISSOCK(status.st_mode)) {
    return make_error(Errc::kInvalidArgument,
                      path +
                          " exists and is not a socket; not replacing it (remove it or choose "
                          "another path)");
  }
  UnixStream::socket probe(io);
  std::error_code error;
  probe.open(UnixStream(), error);
  if (!error) probe.non_blocking(true, error);
  if (!error) probe.connect(UnixStream::endpoint(path), error);
  if (!error || error == asio::error::would_block || error == asio::error::try_again) {
    return make_error(Errc::kUnavailable,
                      path + " is a live socket: another process accepts on it");
  }
  if (error != asio::error::connection_refused && error != std::errc::no_such_file_or_directory) {
    return make_error(Errc::kSyscall,
                      "cannot tell whether " + path + " is in use: " + error.message());
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error::from_errno("unlink stale socket " + path);
  }
  return {};
}

void remove_socket_file(const UnixSocketFile& file) {
  struct stat status {};
  if (::lstat(file.path.c_str(), &status) == 0 && S_ISSOCK(status.st_mode) &&
      status.st_dev == file.device && status.st_ino == file.inode) {
    ::unlink(file.path.c_str());
  }
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
  ListenAddress out;
  if (text.starts_with(kUnixPrefix)) {
    const std::string_view path = text.substr(kUnixPrefix.size());
    const auto fail = [&](std::string_view why) {
      return make_error(Errc::kInvalidArgument,
                        "listen address '" + std::string(text) + "': " + std::string(why));
    };
    if (path.empty() || path.front() != '/') return fail("the unix socket path must be absolute");
    if (path.size() > kMaxUnixPathSize) {
      return fail("the unix socket path is longer than " + std::to_string(kMaxUnixPathSize) +
                  " bytes");
    }
    if (path.find('\0') != std::string_view::npos) return fail("NUL in the unix socket path");
    out.unix_path = std::string(path);
    return out;
  }
  std::string_view ip = text;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return make_error(Errc::kInvalidArgument,
                        "missing ']' in listen address '" + std::string(text) + "'");
    }
    ip = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return make_error(Errc::kInvalidArgument, "expected ':PORT' after ']' in listen address '" +
                                                      std::string(text) + "'");
      }
      port = rest.substr(1);
    }
  } else if (const size_t colon = text.rfind(':');
             colon != std::string_view::npos && text.find(':') == colon) {
    ip = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  std::error_code error;
  const auto address = asio::ip::make_address(std::string(ip), error);
  if (error) {
    return make_error(Errc::kInvalidArgument, "listen address '" + std::string(text) +
                                                  "' is not IP[:PORT], [IPv6][:PORT] or unix:PATH");
  }
  out.ip = address.to_string();
  out.port = kDefaultListenPort;
  if (text.front() != '[' && text.find(':') != text.rfind(':')) port = {};  // bare IPv6
  if (!port.empty()) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
      return make_error(Errc::kInvalidArgument,
                        "invalid port in listen address '" + std::string(text) + "'");
    }
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

struct ProxyServer::State {
  ProxyOptions options;
  std::shared_ptr<core::Logger> logger;
  Resolver resolver;
  DenialAggregator denials;
  RelayShutdown tunnels;
  CredentialStore credentials;
  InferenceRouteTable inference_routes;
  detail::ProxyContext context;
  // Declared last so it is destroyed first: pending coroutine frames die before what they use.
  asio::io_context io;
  // One per listener in --listen order: a TCP acceptor, or a unix one and its socket file.
  struct Listener {
    std::unique_ptr<tcp::acceptor> inet;
    std::unique_ptr<UnixStream::acceptor> local;
    UnixSocketFile file;
  };
  std::vector<Listener> listeners;
  asio::steady_timer denial_timer{io};
  std::vector<std::thread> threads;
  // The I/O threads past the first start with the first connection (grow_threads): a sandbox
  // whose command never connects does not pay for creating and joining them.
  std::mutex extra_threads_mutex;
  std::vector<std::thread> extra_threads;
  std::atomic<bool> grown{false};
  std::atomic<bool> stopped{false};
  std::atomic<uint64_t> accepted{0};

  State(ProxyOptions opts, PolicyStore& store, std::shared_ptr<core::Logger> log)
      : options(std::move(opts)),
        logger(std::move(log)),
        resolver(ResolverOptions{options.resolver_threads, kMaxPendingLookups, kLookupTimeout}),
        context{options, store, resolver, denials, tunnels, *logger, {}},
        io(static_cast<int>(thread_count())) {
    context.ssrf.allow_loopback_upstream = options.allow_loopback_upstream;
    context.credentials = &credentials;
  }

  size_t thread_count() const {
    if (options.threads > 0) return options.threads;
    return std::max<size_t>(1, std::thread::hardware_concurrency());
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor);
  asio::awaitable<void> accept_loop(UnixStream::acceptor& acceptor);
  // Past accept(2): the connection cap, then the connection's own coroutine.
  void serve(tcp::socket socket, const tcp::endpoint& peer, detail::Transport transport);
  // After an accept error: false when the listener is closed, else waits the backoff out.
  asio::awaitable<bool> accept_failed(const std::error_code& error, bool still_open,
                                      std::chrono::milliseconds& backoff);
  void grow_threads();
  Result<void> bind_unix(const std::string& text, const std::string& path);
  asio::awaitable<void> flush_denials();
  void emit_summaries();
};

asio::awaitable<bool> ProxyServer::State::accept_failed(const std::error_code& error,
                                                        bool still_open,
                                                        std::chrono::milliseconds& backoff) {
  if (error == asio::error::operation_aborted || !still_open) co_return false;
  logger->warn("accept failed: {}; retrying in {} ms", error.message(), backoff.count());
  asio::steady_timer wait(io, backoff);
  co_await wait.async_wait(detail::kAsTuple);
  backoff = std::min(backoff * 2, kAcceptBackoffMax);
  co_return true;
}

asio::awaitable<void> ProxyServer::State::accept_loop(tcp::acceptor& acceptor) {
  std::chrono::milliseconds backoff = kAcceptBackoffBase;
  for (;;) {
    // Each connection runs on its own strand: its coroutines never run concurrently.
    tcp::socket socket(asio::make_strand(io));
    tcp::endpoint peer;  // filled by accept(2) itself: no getpeername per connection
    auto [error] = co_await acceptor.async_accept(socket, peer, detail::kAsTuple);
    if (error) {
      if (!co_await accept_failed(error, acceptor.is_open(), backoff)) co_return;
      continue;
    }
    backoff = kAcceptBackoffBase;
    serve(std::move(socket), peer, detail::Transport::kTcp);
  }
}

asio::awaitable<void> ProxyServer::State::accept_loop(UnixStream::acceptor& acceptor) {
  std::chrono::milliseconds backoff = kAcceptBackoffBase;
  for (;;) {
    UnixStream::socket client(io);
    auto [error] = co_await acceptor.async_accept(client, detail::kAsTuple);
    if (error) {
      if (!co_await accept_failed(error, acceptor.is_open(), backoff)) co_return;
      continue;
    }
    backoff = kAcceptBackoffBase;
    // The handlers take a tcp::socket; they only read, write, wait on and shut it down, which
    // is the same for a unix stream socket (detail::Transport).
    tcp::socket socket(asio::make_strand(io));
    std::error_code handover;
    const int fd = client.release(handover);
    if (!handover) socket.assign(tcp::v4(), fd, handover);
    if (handover) {
      if (fd >= 0) ::close(fd);  // released by asio, not yet owned by `socket`
      logger->warn("unix connection dropped: {}", handover.message());
      continue;
    }
    serve(std::move(socket), tcp::endpoint(), detail::Transport::kUnix);
  }
}

void ProxyServer::State::grow_threads() {
  std::lock_guard lock(extra_threads_mutex);
  if (stopped.load()) return;  // shutdown() has taken (or is about to take) the list
  for (size_t i = 1; i < thread_count(); ++i) {  // the first one runs since start()
    extra_threads.emplace_back([this] { io.run(); });
  }
}

void ProxyServer::State::serve(tcp::socket socket, const tcp::endpoint& peer,
                               detail::Transport transport) {
  accepted.fetch_add(1, std::memory_order_relaxed);
  if (!grown.exchange(true)) grow_threads();
  if (context.active.load() >= options.max_connections) {
    logger->emit(core::Event::network(core::NetworkActivity::kRefuse)
                     .denied()
                     .with_message("connection refused: too many concurrent connections")
                     .with_field("max_connections", std::to_string(options.max_connections)));
    auto executor = socket.get_executor();
    asio::co_spawn(
        executor,
        [this, s = std::move(socket)]() mutable -> asio::awaitable<void> {
          (void)co_await detail::write_all(s, proxy_overloaded_response(), options.head_timeout);
        },
        asio::detached);
    return;
  }
  context.active.fetch_add(1);
  auto executor = socket.get_executor();
  asio::co_spawn(executor, detail::serve_connection(context, std::move(socket), peer, transport),
                 [this](const std::exception_ptr& failure) {
                   context.active.fetch_sub(1);
                   if (!failure) return;
                   try {
                     std::rethrow_exception(failure);
                   } catch (const std::exception& e) {
                     logger->error("connection handler failed: {}", e.what());
                   }
                 });
}

void ProxyServer::State::emit_summaries() {
  for (const DenialSummary& summary : denials.flush()) {
    std::string reasons;
    for (const std::string& reason : summary.sample_reasons) {
      if (!reasons.empty()) reasons += " | ";
      reasons += reason;
    }
    logger->emit(core::Event::network(core::NetworkActivity::kRefuse)
                     .denied()
                     .with_message("DENIAL_SUMMARY " + summary.host + ":" +
                                   std::to_string(summary.port) + " binary=" + summary.binary +
                                   " count=" + std::to_string(summary.count))
                     .with_dst(summary.host, summary.port)
                     .with_reason(reasons)
                     .with_field("denial_stage", summary.stage)
                     .with_field("count", std::to_string(summary.count))
                     .with_field("first_seen_ms", std::to_string(summary.first_seen_ms))
                     .with_field("last_seen_ms", std::to_string(summary.last_seen_ms)));
  }
}

asio::awaitable<void> ProxyServer::State::flush_denials() {
  for (;;) {
    denial_timer.expires_after(options.denial_window);
    auto [error] = co_await denial_timer.async_wait(detail::kAsTuple);
    if (error) co_return;
    emit_summaries();
  }
}

ProxyServer::ProxyServer(ProxyOptions options, PolicyStore& store,
                         std::shared_ptr<core::Logger> logger, tls::Interception* interception)
    : state_(std::make_unique<State>(std::move(options), store, std::move(logger))) {
  state_->context.tls = interception;
  state_->context.inference = &state_->inference_routes;
}

InferenceRouteTable& ProxyServer::inference_routes() {
  return state_->inference_routes;
}

ProxyServer::~ProxyServer() {
  shutdown(std::chrono::milliseconds(0));
}

Result<void> ProxyServer::State::bind_unix(const std::string& text, const std::string& path) {
  const auto fail = [&](const Error& error) {
    return make_error(error.code, "cannot listen on " + text + ": " + error.message);
  };
  if (auto cleared = clear_stale_socket(io, path); !cleared.ok()) return fail(cleared.error());
  auto acceptor = std::make_unique<UnixStream::acceptor>(io);
  std::error_code error;
  acceptor->open(UnixStream(), error);
  if (!error) acceptor->bind(UnixStream::endpoint(path), error);
  if (error) return make_error(Errc::kSyscall, "cannot listen on " + text + ": " + error.message());
  // Bound but not yet listening, so nobody can connect before the mode is set (bind(2) applies
  // the umask, which may be looser or stricter than asked).
  UnixSocketFile file{path};
  struct stat status {};
  if (::chmod(path.c_str(), static_cast<mode_t>(options.unix_listen_mode)) != 0 ||
      ::lstat(path.c_str(), &status) != 0) {
    const Error failure = Error::from_errno("chmod " + path);
    ::unlink(path.c_str());
    return fail(failure);
  }
  file.device = status.st_dev;
  file.inode = status.st_ino;
  acceptor->listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    remove_socket_file(file);
    return make_error(Errc::kSyscall, "cannot listen on " + text + ": " + error.message());
  }
  listeners.push_back(Listener{nullptr, std::move(acceptor), std::move(file)});
  return {};
}

Result<void> ProxyServer::bind() {
  for (const std::string& text : state_->options.listen) {
    auto parsed = parse_listen_address(text);
    if (!parsed.ok()) return parsed.error();
    if (!parsed->unix_path.empty()) {
      if (auto bound = state_->bind_unix(text, parsed->unix_path); !bound.ok()) return bound;
      continue;
    }
    const tcp::endpoint endpoint(asio::ip::make_address(parsed->ip), parsed->port);
    auto acceptor = std::make_unique<tcp::acceptor>(state_->io);
    std::error_code error;
    acceptor->open(endpoint.protocol(), error);
    if (!error) acceptor->set_option(tcp::acceptor::reuse_address(true), error);
    if (!error && endpoint.address().is_v6()) acceptor->set_option(asio::ip::v6_only(true), error);
    if (!error) acceptor->bind(endpoint, error);
    if (!error) acceptor->listen(asio::socket_base::max_listen_connections, error);
    if (error) {
      return make_error(Errc::kSyscall, "cannot listen on " + text + ": " + error.message());
    }
    state_->listeners.push_back(State::Listener{std::move(acceptor), nullptr, {}});
  }
  return {};
}

Result<void> ProxyServer::adopt_listener(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int saved = errno;
    ::close(fd);
    return make_error(Errc::kSyscall, std::string("getsockname: ") + std::strerror(saved));
  }
  const tcp protocol = address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
  auto acceptor = std::make_unique<tcp::acceptor>(state_->io);
  std::error_code error;
  acceptor->assign(protocol, fd, error);
  if (error) {
    ::close(fd);
    return make_error(Errc::kSyscall, "cannot adopt listener: " + error.message());
  }
  state_->listeners.push_back(State::Listener{std::move(acceptor), nullptr, {}});
  return {};
}

std::vector<std::string> ProxyServer::bound_addresses() const {
  std::vector<std::string> out;
  for (const State::Listener& listener : state_->listeners) {
    if (listener.local) {
      out.push_back(std::string(kUnixPrefix) + listener.file.path);
      continue;
    }
    std::error_code error;
    out.push_back(endpoint_text(listener.inet->local_endpoint(error)));
  }
  return out;
}

void ProxyServer::start() {
  State& s = *state_;
  for (State::Listener& listener : s.listeners) {
    if (listener.local) {
      asio::co_spawn(s.io, s.accept_loop(*listener.local), asio::detached);
    } else {
      asio::co_spawn(s.io, s.accept_loop(*listener.inet), asio::detached);
    }
  }
  asio::co_spawn(s.io, s.flush_denials(), asio::detached);
  // One thread until the first connection; grow_threads() starts the rest.
  s.threads.emplace_back([&s] { s.io.run(); });
}

void ProxyServer::shutdown(std::chrono::milliseconds grace) {
  State& s = *state_;
  if (s.stopped.exchange(true)) return;
  s.context.draining = true;
  // The path goes first: a client that looks now finds no socket rather than one that no longer
  // accepts.
  for (const State::Listener& listener : s.listeners) {
    if (listener.local) remove_socket_file(listener.file);
  }
  asio::post(s.io, [&s] {
    for (State::Listener& listener : s.listeners) {
      std::error_code ignored;
      if (listener.local) {
        listener.local->close(ignored);
      } else {
        listener.inet->close(ignored);
      }
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (s.context.active.load() > 0 && std::chrono::steady_clock::now() < deadline &&
         !s.threads.empty()) {
    std::this_thread::sleep_for(kDrainPoll);
  }
  if (s.context.active.load() > 0) {
    s.logger->warn("grace period over: cutting {} open connection(s)", s.context.active.load());
  }
  s.tunnels.end_all();
  asio::post(s.io, [&s] {
    s.denial_timer.cancel();
    s.emit_summaries();
  });
  // Give cancelled tunnels a moment to log their close events, then stop the loop.
  const auto cut_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (s.context.active.load() > 0 && std::chrono::steady_clock::now() < cut_deadline &&
         !s.threads.empty()) {
    std::this_thread::sleep_for(kDrainPoll);
  }
  s.io.stop();
  for (auto& thread : s.threads)
    thread.join();
  s.threads.clear();
  std::vector<std::thread> extra;
  {
    std::lock_guard lock(s.extra_threads_mutex);
    extra.swap(s.extra_threads);
  }
  for (auto& thread : extra)
    thread.join();
  s.resolver.shutdown();
  s.emit_summaries();
}

size_t ProxyServer::active_connections() const {
  return state_->context.active.load();
}

uint64_t ProxyServer::connections_total() const {
  return state_->accepted.load(std::memory_order_relaxed);
}

DenialAggregator& ProxyServer::denials() {
  return state_->denials;
}

CredentialStore& ProxyServer::credentials() {
  return state_->credentials;
}

}  // namespace openshell::proxy
