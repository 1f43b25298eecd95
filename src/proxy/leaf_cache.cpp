// The leaf cache: an LRU under one mutex, one mint in flight per host, and waiters woken on their
// own executors through a timer that lives in their coroutine frame.
#include "openshell/proxy/leaf_cache.hpp"

#include <algorithm>
#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <condition_variable>
#include <exception>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace openshell::proxy::tls {
namespace {

// One awaiting coroutine. Its executor and timer live in the coroutine frame; the pointers are
// published under `mutex` and cleared before the frame goes away (also when the frame dies with
// its io_context), so a mint that completes late touches nothing destroyed (as in resolver.cpp).
struct Waiter {
  std::mutex mutex;
  std::optional<LeafResult> result;
  const asio::any_io_executor* executor = nullptr;  // null: nobody is waiting any more
  asio::steady_timer* timer = nullptr;
};

class WaiterGuard {
 public:
  explicit WaiterGuard(Waiter& waiter) : waiter_(waiter) {}
  ~WaiterGuard() { release(); }
  WaiterGuard(const WaiterGuard&) = delete;
  WaiterGuard& operator=(const WaiterGuard&) = delete;

  void release() {
    std::lock_guard lock(waiter_.mutex);
    waiter_.executor = nullptr;
    waiter_.timer = nullptr;
  }

 private:
  Waiter& waiter_;
};

// Stores the result and wakes the coroutine on its own executor. The timer is only touched
// there, under the waiter's mutex, and only while the coroutine still waits on it.
void wake(const std::shared_ptr<Waiter>& waiter, const LeafResult& result) noexcept {
  try {
    std::lock_guard lock(waiter->mutex);
    if (waiter->executor == nullptr || waiter->result) return;
    waiter->result.emplace(result);
    asio::post(*waiter->executor, [waiter] {
      std::lock_guard inner(waiter->mutex);
      if (waiter->timer != nullptr) waiter->timer->cancel();
    });
  } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory; the waiter stays asleep
  }
}

}  // namespace

namespace detail {

struct LeafCacheState {
  using Entry = std::pair<std::string, std::shared_ptr<const LeafCertificate>>;

  const CertificateAuthority* ca;
  std::size_t capacity;

  std::mutex mutex;
  std::condition_variable idle;
  bool closing = false;     // the cache is gone: mint nothing more, cache nothing more
  std::size_t minting = 0;  // jobs inside CertificateAuthority::mint
  std::list<Entry> lru;     // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Waiter>>> flights;
  LeafCache::Stats stats;

  LeafCacheState(const CertificateAuthority& authority, std::size_t cap)
      : ca(&authority), capacity(std::max<std::size_t>(cap, 1)) {}

  // Under `mutex`.
  void insert(const std::string& host, const std::shared_ptr<const LeafCertificate>& leaf) {
    if (auto found = index.find(host); found != index.end()) {
      found->second->second = leaf;
      lru.splice(lru.begin(), lru, found->second);
      return;
    }
    while (lru.size() >= capacity) {
      index.erase(lru.back().first);
      lru.pop_back();
      ++stats.evictions;
    }
    lru.emplace_front(host, leaf);
    index[host] = lru.begin();
  }

  // The mint's end, successful or not: every waiter of the flight gets the same result.
  void finish(const std::string& host, const LeafResult& result) {
    std::vector<std::shared_ptr<Waiter>> waiters;
    {
      std::lock_guard lock(mutex);
      if (auto flight = flights.find(host); flight != flights.end()) {
        waiters = std::move(flight->second);
        flights.erase(flight);
      }
      if (result.ok() && !closing) insert(host, result.value());
    }
    for (const std::shared_ptr<Waiter>& waiter : waiters)
      wake(waiter, result);
  }

  LeafResult mint(const std::string& host) {
    {
      std::lock_guard lock(mutex);
      if (closing) return make_error(Errc::kUnavailable, "leaf certificate cache shut down");
      ++minting;
    }
    LeafResult result = [&]() -> LeafResult {
      try {
        return ca->mint(host);
      } catch (const std::exception& e) {
        return make_error(Errc::kInternal, "minting a certificate for " + host + ": " + e.what());
      }
    }();
    {
      std::lock_guard lock(mutex);
      --minting;
    }
    idle.notify_all();
    return result;
  }
};

}  // namespace detail

namespace {

using detail::LeafCacheState;

// What the pool runs. Destroyed without running (the pool was stopped with it queued), it still
// answers the waiters, so none waits forever.
class MintJob {
 public:
  MintJob(std::shared_ptr<LeafCacheState> state, std::string host)
      : state_(std::move(state)), host_(std::move(host)) {}
  MintJob(MintJob&&) noexcept = default;  // leaves state_ null: only one copy ever answers
  MintJob& operator=(MintJob&&) = delete;
  MintJob(const MintJob&) = delete;
  MintJob& operator=(const MintJob&) = delete;
  ~MintJob() {
    if (!state_) return;
    try {
      state_->finish(host_, make_error(Errc::kUnavailable,
                                       "certificate minting stopped before " + host_ + " ran"));
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory in a destructor
    }
  }

  void operator()() {
    const std::shared_ptr<LeafCacheState> state = std::move(state_);
    state->finish(host_, state->mint(host_));
  }

 private:
  std::shared_ptr<LeafCacheState> state_;
  std::string host_;
};

}  // namespace

LeafCache::LeafCache(const CertificateAuthority& ca, asio::thread_pool& pool, std::size_t capacity)
    : state_(std::make_shared<LeafCacheState>(ca, capacity)), pool_(pool) {}

LeafCache::~LeafCache() {
  std::unique_lock lock(state_->mutex);
  state_->closing = true;
  state_->idle.wait(lock, [this] { return state_->minting == 0; });
  state_->index.clear();
  state_->lru.clear();
}

LeafCache::Stats LeafCache::stats() const {
  std::lock_guard lock(state_->mutex);
  Stats out = state_->stats;
  out.size = state_->lru.size();
  return out;
}

std::size_t LeafCache::capacity() const {
  return state_->capacity;
}

asio::awaitable<LeafResult> LeafCache::get(std::string host) {
  std::transform(host.begin(), host.end(), host.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  // After the wait only these are touched, never `this`: the cache may be gone by then.
  const std::shared_ptr<LeafCacheState> state = state_;
  try {
    const asio::any_io_executor executor = co_await asio::this_coro::executor;  // no suspension
    asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
    auto waiter = std::make_shared<Waiter>();
    waiter->executor = &executor;
    waiter->timer = &timer;
    WaiterGuard guard(*waiter);

    bool start = false;
    {
      std::lock_guard lock(state->mutex);
      if (auto found = state->index.find(host); found != state->index.end()) {
        state->lru.splice(state->lru.begin(), state->lru, found->second);
        ++state->stats.hits;
        co_return found->second->second;
      }
      std::vector<std::shared_ptr<Waiter>>& flight = state->flights[host];
      start = flight.empty();
      ++(start ? state->stats.misses : state->stats.coalesced);
      flight.push_back(waiter);
    }
    // A throwing post destroys the job unrun, which answers the flight (this waiter included).
    if (start) asio::post(pool_, MintJob(state, host));

    // The wait is started under the waiter's mutex, so a wake-up cannot slip in between "is
    // there a result" and async_wait, whatever thread the executor runs on.
    auto initiation = [&sleeper = *waiter, &timer](auto handler) {
      std::lock_guard lock(sleeper.mutex);
      if (sleeper.result) timer.expires_at(asio::steady_timer::time_point::min());
      timer.async_wait(std::move(handler));
    };
    auto token = asio::experimental::as_tuple(asio::use_awaitable);
    auto [ec] =
        co_await asio::async_initiate<decltype(token), void(asio::error_code)>(initiation, token);
    guard.release();
    std::lock_guard lock(waiter->mutex);
    if (waiter->result) co_return std::move(*waiter->result);
    co_return make_error(Errc::kUnavailable, "waiting for the certificate of " + host +
                                                 " was cancelled (" + ec.message() + ")");
  } catch (const std::exception& e) {
    co_return make_error(Errc::kInternal, "leaf certificate for " + host + ": " + e.what());
  }
}

}  // namespace openshell::proxy::tls
