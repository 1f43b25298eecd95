// Leaf cache: hits share the leaf, LRU eviction, one mint for many concurrent waiters, failures
// not cached, cancellation, and waiters whose io_context or minting pool goes away.
#include "openshell/proxy/leaf_cache.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "io_thread.hpp"

namespace {

using namespace std::chrono_literals;
using openshell::Errc;
using openshell::proxy::tls::CertificateAuthority;
using openshell::proxy::tls::LeafCache;
using openshell::proxy::tls::LeafResult;
using openshell::proxy::tls::TlsRandom;
using openshell::test::IoThread;

const CertificateAuthority& test_ca() {
  static TlsRandom random;
  static const bool seeded = TlsRandom::init(random).ok();
  REQUIRE(seeded);
  static auto ca = CertificateAuthority::generate(random);
  REQUIRE(ca.ok());
  return *ca.value();
}

// Holds the pool's only thread, so a test decides when the mints queued behind it run.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return open_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
};

std::future<LeafResult> start(asio::io_context& io, LeafCache& cache, std::string host) {
  auto promise = std::make_shared<std::promise<LeafResult>>();
  auto future = promise->get_future();
  asio::co_spawn(
      io,
      [&cache, host = std::move(host), promise]() -> asio::awaitable<void> {
        promise->set_value(co_await cache.get(host));
      },
      asio::detached);
  return future;
}

LeafResult get(std::future<LeafResult>& future) {
  REQUIRE(future.wait_for(10s) == std::future_status::ready);
  return future.get();
}

std::shared_ptr<const openshell::proxy::tls::LeafCertificate> leaf(IoThread& io, LeafCache& cache,
                                                                   const std::string& host) {
  auto future = start(io.io(), cache, host);
  LeafResult result = get(future);
  INFO(host << ": " << (result.ok() ? "" : result.error().message));
  REQUIRE(result.ok());
  return result.value();
}

template <class Predicate>
bool eventually(Predicate predicate) {
  for (int i = 0; i < 500; ++i) {
    if (predicate()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return predicate();
}

}  // namespace

TEST_CASE("leaf cache: a hit returns the same leaf, hosts are case-insensitive", "[leaf_cache]") {
  asio::thread_pool pool(1);
  LeafCache cache(test_ca(), pool);
  CHECK(cache.capacity() == openshell::proxy::tls::kDefaultLeafCacheSize);
  IoThread io;
  const auto first = leaf(io, cache, "Api.Example.COM");
  const auto second = leaf(io, cache, "api.example.com");
  CHECK(first == second);
  LeafCache::Stats stats = cache.stats();
  CHECK(stats.misses == 1);
  CHECK(stats.hits == 1);
  CHECK(stats.size == 1);
  char dn[128];
  REQUIRE(mbedtls_x509_dn_gets(dn, sizeof dn, &first->chain.subject) > 0);
  CHECK(std::string(dn) == "CN=api.example.com");

  const auto other = leaf(io, cache, "other.example.com");
  CHECK(other != first);
  CHECK(cache.stats().size == 2);
}

TEST_CASE("leaf cache: full, it evicts the least recently used host", "[leaf_cache]") {
  asio::thread_pool pool(1);
  LeafCache cache(test_ca(), pool, 2);
  IoThread io;
  const auto a = leaf(io, cache, "a.example");
  const auto b = leaf(io, cache, "b.example");
  CHECK(leaf(io, cache, "a.example") == a);  // a is now the most recent
  const auto c = leaf(io, cache, "c.example");
  LeafCache::Stats stats = cache.stats();
  CHECK(stats.evictions == 1);
  CHECK(stats.size == 2);
  CHECK(leaf(io, cache, "a.example") == a);
  CHECK(leaf(io, cache, "c.example") == c);
  CHECK(leaf(io, cache, "b.example") != b);  // evicted: minted again
  stats = cache.stats();
  CHECK(stats.misses == 4);
  CHECK(stats.hits == 3);
  CHECK(stats.evictions == 2);
}

TEST_CASE("leaf cache: concurrent gets for one host share one mint", "[leaf_cache]") {
  asio::thread_pool pool(2);
  LeafCache cache(test_ca(), pool);
  IoThread io;
  constexpr int kWaiters = 50;
  std::vector<std::future<LeafResult>> futures;
  futures.reserve(kWaiters);
  for (int i = 0; i < kWaiters; ++i)
    futures.push_back(start(io.io(), cache, "busy.example"));
  std::set<const void*> leaves;
  for (auto& future : futures) {
    LeafResult result = get(future);
    REQUIRE(result.ok());
    leaves.insert(result.value().get());
  }
  CHECK(leaves.size() == 1);
  const LeafCache::Stats stats = cache.stats();
  CHECK(stats.misses == 1);
  CHECK(stats.hits + stats.coalesced == kWaiters - 1);
  CHECK(stats.size == 1);
}

TEST_CASE("leaf cache: waiters of one slow mint all get its leaf", "[leaf_cache]") {
  asio::thread_pool pool(1);
  Gate gate;
  asio::post(pool, [&gate] { gate.wait(); });
  LeafCache cache(test_ca(), pool);
  IoThread io;
  std::vector<std::future<LeafResult>> futures;
  futures.reserve(5);
  for (int i = 0; i < 5; ++i)
    futures.push_back(start(io.io(), cache, "slow.example"));
  REQUIRE(eventually([&] { return cache.stats().coalesced == 4; }));
  gate.open();
  std::set<const void*> leaves;
  for (auto& future : futures) {
    LeafResult result = get(future);
    REQUIRE(result.ok());
    leaves.insert(result.value().get());
  }
  CHECK(leaves.size() == 1);
  CHECK(cache.stats().misses == 1);
}

TEST_CASE("leaf cache: a failed mint reaches every waiter and is not cached", "[leaf_cache]") {
  asio::thread_pool pool(1);
  Gate gate;
  asio::post(pool, [&gate] { gate.wait(); });
  LeafCache cache(test_ca(), pool);
  IoThread io;
  auto first = start(io.io(), cache, "not a host");
  auto second = start(io.io(), cache, "not a host");
  REQUIRE(eventually([&] { return cache.stats().coalesced == 1; }));
  gate.open();
  for (auto* future : {&first, &second}) {
    LeafResult result = get(*future);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().code == Errc::kInvalidArgument);
  }
  auto third = start(io.io(), cache, "not a host");
  CHECK_FALSE(get(third).ok());
  const LeafCache::Stats stats = cache.stats();
  CHECK(stats.misses == 2);
  CHECK(stats.size == 0);
}

TEST_CASE("leaf cache: a cancelled waiter gives up, the mint still lands", "[leaf_cache]") {
  asio::thread_pool pool(1);
  Gate gate;
  asio::post(pool, [&gate] { gate.wait(); });
  LeafCache cache(test_ca(), pool);
  IoThread io;
  asio::cancellation_signal signal;
  auto promise = std::make_shared<std::promise<LeafResult>>();
  auto future = promise->get_future();
  asio::co_spawn(
      io.io(),
      [&cache, promise]() -> asio::awaitable<void> {
        promise->set_value(co_await cache.get("cancel.example"));
      },
      asio::bind_cancellation_slot(signal.slot(), asio::detached));
  REQUIRE(eventually([&] { return cache.stats().misses == 1; }));
  asio::post(io.io(), [&signal] { signal.emit(asio::cancellation_type::terminal); });
  LeafResult result = get(future);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == Errc::kUnavailable);
  gate.open();
  pool.join();
  CHECK(cache.stats().size == 1);
}

TEST_CASE("leaf cache: the waiter's io_context destroyed during the mint", "[leaf_cache]") {
  asio::thread_pool pool(1);
  Gate gate;
  asio::post(pool, [&gate] { gate.wait(); });
  LeafCache cache(test_ca(), pool);
  {
    asio::io_context io;
    auto future = start(io, cache, "gone.example");
    while (cache.stats().misses == 0)
      io.poll();
    // The suspended coroutine dies with its io_context, before the mint has even started.
  }
  gate.open();
  pool.join();  // the mint completes and finds nobody to wake
  CHECK(cache.stats().size == 1);
}

TEST_CASE("leaf cache: a mint dropped by a stopped pool fails its waiters", "[leaf_cache]") {
  auto pool = std::make_unique<asio::thread_pool>(1);
  Gate gate;
  asio::post(*pool, [&gate] { gate.wait(); });
  LeafCache cache(test_ca(), *pool);
  IoThread io;
  auto future = start(io.io(), cache, "dropped.example");
  REQUIRE(eventually([&] { return cache.stats().misses == 1; }));
  pool->stop();
  gate.open();
  pool->join();
  pool.reset();  // destroys the queued mint without running it
  LeafResult result = get(future);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == Errc::kUnavailable);
  CHECK(cache.stats().size == 0);
}
