// The tunnel relay: session bookkeeping (counters, idle watchdog, external shutdown) and the
// plain-TCP fast path (non-blocking syscalls, reactor waits only when a socket would block).
#include "openshell/proxy/relay.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <exception>
#include <utility>

namespace openshell::proxy {

using asio::ip::tcp;

std::string_view relay_end_name(RelayEnd end) {
  switch (end) {
    case RelayEnd::kCompleted:
      return "completed";
    case RelayEnd::kIdleTimeout:
      return "idle timeout";
    case RelayEnd::kCancelled:
      return "cancelled";
    case RelayEnd::kClientError:
      return "client error";
    case RelayEnd::kUpstreamError:
      return "upstream error";
  }
  return "unknown";
}

// ---- RelayShutdown ---------------------------------------------------------------------------

// `session` is read and cleared only on `executor` (the relay's strand), so a late end_all()
// finds either a live session or nothing.
struct RelayShutdown::Entry {
  asio::any_io_executor executor;
  detail::RelaySession* session = nullptr;
};

void RelayShutdown::end_all() {
  std::lock_guard lock(mutex_);
  ended_ = true;
  // Posting under the lock: a relay cannot unregister (and its io_context cannot finish tearing
  // down) while its executor is being used here. post() never runs the function inline.
  for (const auto& [id, entry] : entries_) {
    asio::post(entry->executor, [entry = entry] {
      if (entry->session != nullptr) entry->session->end(RelayEnd::kCancelled);
    });
  }
}

std::size_t RelayShutdown::active() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

uint64_t RelayShutdown::add(std::shared_ptr<Entry> entry) {
  std::lock_guard lock(mutex_);
  if (ended_) return 0;
  const uint64_t id = next_id_++;
  entries_.emplace(id, std::move(entry));
  return id;
}

void RelayShutdown::remove(uint64_t id) {
  std::lock_guard lock(mutex_);
  entries_.erase(id);
}

namespace detail {

// ---- RelaySession ----------------------------------------------------------------------------

RelaySession::RelaySession(const RelayOptions& options, asio::any_io_executor executor,
                           std::function<void()> close_streams)
    : executor_(std::move(executor)),
      close_streams_(std::move(close_streams)),
      idle_timeout_(options.idle_timeout),
      buffer_size_(options.buffer_size > 0 ? options.buffer_size : kRelayBufferSize),
      bulk_buffer_size_(std::max(buffer_size_, options.bulk_buffer_size)),
      start_(Clock::now()),
      last_activity_(start_),
      shutdown_(options.shutdown) {
  if (shutdown_ != nullptr) {
    registration_ = std::make_shared<RelayShutdown::Entry>();
    registration_->executor = executor_;
    registration_->session = this;
    registration_id_ = shutdown_->add(registration_);
    if (registration_id_ == 0) end(RelayEnd::kCancelled);  // the server is already past its grace
  }
}

RelaySession::~RelaySession() {
  if (registration_) {
    registration_->session = nullptr;
    if (registration_id_ != 0) shutdown_->remove(registration_id_);
  }
}

void RelaySession::touch() {
  last_activity_ = Clock::now();
}

void RelaySession::moved(Direction direction, std::size_t bytes) {
  if (bytes == 0) return;
  if (direction == Direction::kClientToUpstream) {
    stats_.client_to_upstream += bytes;
  } else {
    stats_.upstream_to_client += bytes;
  }
  touch();
}

void RelaySession::io_error(bool client_side, const std::error_code& error) {
  if (ending_) return;  // aborts caused by our own teardown
  if (error == asio::error::operation_aborted) {
    // Nobody here closed anything: the awaiting coroutine was cancelled.
    end(RelayEnd::kCancelled);
    return;
  }
  stats_.error = error;
  end(client_side ? RelayEnd::kClientError : RelayEnd::kUpstreamError);
}

void RelaySession::end(RelayEnd reason) {
  if (ending_) return;
  ending_ = true;
  stats_.end = reason;
  // Closing cancels whatever the pumps wait on; they see the abort and return.
  if (!closed_) {
    closed_ = true;
    close_streams_();
  }
}

asio::awaitable<void> RelaySession::watchdog() {
  asio::steady_timer timer(executor_);
  if (idle_timeout_.count() <= 0) {
    timer.expires_at(Clock::time_point::max());
    co_await timer.async_wait(kRelayAsTuple);
    co_return;
  }
  // One timer per tunnel, re-armed only when it fires: resetting it on every read would put a
  // timer-queue operation (and a lock) on the hot path.
  for (;;) {
    timer.expires_at(last_activity_ + idle_timeout_);
    auto [error] = co_await timer.async_wait(kRelayAsTuple);
    if (error || ending_) co_return;
    if (Clock::now() - last_activity_ >= idle_timeout_) {
      end(RelayEnd::kIdleTimeout);
      co_return;
    }
  }
}

RelayStats RelaySession::finish() {
  if (!ending_) {
    ending_ = true;
    stats_.end = RelayEnd::kCompleted;
  }
  if (!closed_) {
    closed_ = true;
    close_streams_();
  }
  stats_.duration = Clock::now() - start_;
  return stats_;
}

asio::awaitable<RelayStats> run_relay(RelaySession& session, asio::awaitable<void> pumps) {
  using asio::experimental::awaitable_operators::operator||;
  co_await asio::this_coro::throw_if_cancelled(false);
  try {
    co_await (std::move(pumps) || session.watchdog());
  } catch (const std::exception&) {
    session.end(RelayEnd::kCancelled);
  }
  co_return session.finish();
}

RelayStats failed_relay_stats() {
  RelayStats stats;
  stats.end = RelayEnd::kCancelled;
  stats.error = std::make_error_code(std::errc::not_enough_memory);
  return stats;
}

}  // namespace detail

// ---- plain TCP ------------------------------------------------------------------------------

namespace {

// Asio's own system category, so codes compare equal to asio::error::connection_reset & co.
std::error_code errno_code(int err) {
  return {err, asio::error::get_system_category()};
}

// Bytes one tunnel may move before it lets other coroutines on its thread run: the pump below
// only suspends when a socket would block, so a fast tunnel would otherwise starve its neighbours.
constexpr std::size_t kTurnBudget = std::size_t{256} * 1024;
// Consecutive reads that fill the buffer before a direction counts as bulk and gets the larger
// buffer: a handshake flight or a single burst should not cost the extra memory.
constexpr int kFullReadsBeforeBulk = 4;

// One direction between two sockets, non-blocking recv/send first and a reactor wait only when a
// socket would block. That skips a scheduler round trip per chunk, which is most of what the
// generic pump costs over the syscalls themselves. A chunk is fully sent before the next recv,
// so the buffer is the bound. MSG_NOSIGNAL: a reset peer is an error value, not a SIGPIPE.
asio::awaitable<void> socket_pump(tcp::socket& from, tcp::socket& to, detail::RelaySession& session,
                                  detail::Direction direction) {
  const bool from_client = direction == detail::Direction::kClientToUpstream;
  std::size_t capacity = session.buffer_size();
  std::unique_ptr<std::byte[]> buffer(new std::byte[capacity]);
  int full_reads = 0;
  std::size_t since_yield = 0;
  // MSG_DONTWAIT makes each recv/send non-blocking by itself: no per-tunnel FIONBIO ioctls.
  for (;;) {
    if (since_yield >= kTurnBudget) {
      since_yield = 0;
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      if (session.ending()) co_return;
    }
    const ssize_t got = ::recv(from.native_handle(), buffer.get(), capacity, MSG_DONTWAIT);
    if (got == 0) {
      if (!session.ending()) co_await RelayStreamTraits<tcp::socket>::half_close(to);
      co_return;
    }
    if (got < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err != EAGAIN) {  // == EWOULDBLOCK on Linux
        session.io_error(from_client, errno_code(err));
        co_return;
      }
      since_yield = 0;
      auto [error] = co_await from.async_wait(tcp::socket::wait_read, detail::kRelayAsTuple);
      if (error) {
        session.io_error(from_client, error);
        co_return;
      }
      continue;
    }
    session.touch();
    const auto count = static_cast<std::size_t>(got);
    full_reads = count == capacity ? full_reads + 1 : 0;
    std::size_t sent = 0;
    while (sent < count) {
      const ssize_t put = ::send(to.native_handle(), buffer.get() + sent, count - sent,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
      if (put > 0) {
        sent += static_cast<std::size_t>(put);
        since_yield += static_cast<std::size_t>(put);
        session.moved(direction, static_cast<std::size_t>(put));
        continue;
      }
      const int err = put == 0 ? EPIPE : errno;
      if (err == EINTR) continue;
      if (err != EAGAIN) {
        session.io_error(!from_client, errno_code(err));
        co_return;
      }
      since_yield = 0;
      auto [error] = co_await to.async_wait(tcp::socket::wait_write, detail::kRelayAsTuple);
      if (error) {
        session.io_error(!from_client, error);
        co_return;
      }
    }
    // The buffer is empty here, so it can be swapped for the bulk one.
    if (full_reads >= kFullReadsBeforeBulk && capacity < session.bulk_buffer_size()) {
      capacity = session.bulk_buffer_size();
      buffer.reset(new std::byte[capacity]);
    }
  }
}

asio::awaitable<void> tcp_pump(tcp::socket& from, tcp::socket& to, detail::RelaySession& session,
                               detail::Direction direction, std::vector<std::byte> initial) {
  const bool from_client = direction == detail::Direction::kClientToUpstream;
  co_await asio::this_coro::throw_if_cancelled(false);
  try {
    if (!initial.empty()) {
      auto [error, written] = co_await asio::async_write(
          to, asio::buffer(initial.data(), initial.size()), detail::kRelayAsTuple);
      session.moved(direction, written);
      if (error) {
        session.io_error(!from_client, error);
        co_return;
      }
    }
    co_await socket_pump(from, to, session, direction);
  } catch (const std::exception&) {
    session.io_error(from_client, std::make_error_code(std::errc::not_enough_memory));
  }
}

}  // namespace

asio::awaitable<RelayStats> relay(tcp::socket& client, tcp::socket& upstream, RelayOptions options,
                                  std::span<const std::byte> initial) {
  using asio::experimental::awaitable_operators::operator&&;
  co_await asio::this_coro::throw_if_cancelled(false);
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  auto close_both = [&client, &upstream] {
    RelayStreamTraits<tcp::socket>::close(client);
    RelayStreamTraits<tcp::socket>::close(upstream);
  };
  try {
    detail::RelaySession session(options, executor, close_both);
    co_return co_await detail::run_relay(
        session, tcp_pump(client, upstream, session, detail::Direction::kClientToUpstream,
                          std::vector<std::byte>(initial.begin(), initial.end())) &&
                     tcp_pump(upstream, client, session, detail::Direction::kUpstreamToClient, {}));
  } catch (const std::exception&) {
    // Only allocation can fail before the relay runs.
  }
  close_both();
  co_return detail::failed_relay_stats();
}

}  // namespace openshell::proxy
