// Resolver pool: literals without a thread hop, real `localhost`, error wording, deduplication,
// one slow lookup not stalling others, the timeout, the bounded queue, cancellation, shutdown.
#include "openshell/proxy/resolver.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "io_thread.hpp"

namespace {

using namespace std::chrono_literals;
using openshell::Errc;
using openshell::Result;
using openshell::policy::IpAddress;
using openshell::proxy::Resolver;
using openshell::proxy::ResolveResult;
using openshell::proxy::ResolverOptions;

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

using openshell::test::IoThread;

// A latch the fake lookup blocks on, so tests control when a "slow" lookup returns.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return open_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  bool wait_for_waiters(int count) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 5s, [&] { return waiting_ >= count; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  int waiting_ = 0;
};

std::future<ResolveResult> start(asio::io_context& io, Resolver& resolver, std::string host,
                                 uint16_t port = 80) {
  auto promise = std::make_shared<std::promise<ResolveResult>>();
  auto future = promise->get_future();
  asio::co_spawn(
      io,
      [&resolver, host = std::move(host), port, promise]() -> asio::awaitable<void> {
        promise->set_value(co_await resolver.resolve(host, port));
      },
      asio::detached);
  return future;
}

ResolveResult get(std::future<ResolveResult>& future) {
  REQUIRE(future.wait_for(10s) == std::future_status::ready);
  return future.get();
}

}  // namespace

TEST_CASE("resolver: IP literals return without a lookup", "[resolver]") {
  std::atomic<int> calls{0};
  Resolver resolver({}, [&](const std::string&, uint16_t) -> Result<std::vector<IpAddress>> {
    ++calls;
    return std::vector<IpAddress>{};
  });
  IoThread io;
  for (const char* literal : {"127.0.0.1", "::1", "10.1.2.3", "fd00::5"}) {
    auto future = start(io.io(), resolver, literal);
    ResolveResult result = get(future);
    REQUIRE(result.ok());
    CHECK(result.value() == std::vector<IpAddress>{ip(literal)});
  }
  CHECK(calls == 0);
}

TEST_CASE("resolver: localhost through getaddrinfo", "[resolver]") {
  // What this machine's resolver says, families included.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  REQUIRE(getaddrinfo("localhost", nullptr, &hints, &list) == 0);
  bool has_v4 = false;
  bool has_v6 = false;
  for (addrinfo* entry = list; entry != nullptr; entry = entry->ai_next) {
    has_v4 = has_v4 || entry->ai_family == AF_INET;
    has_v6 = has_v6 || entry->ai_family == AF_INET6;
  }
  freeaddrinfo(list);

  Resolver resolver;
  IoThread io;
  auto future = start(io.io(), resolver, "localhost", 8080);
  ResolveResult result = get(future);
  REQUIRE(result.ok());
  REQUIRE_FALSE(result.value().empty());
  bool got_v4 = false;
  bool got_v6 = false;
  for (const IpAddress& address : result.value()) {
    CHECK(openshell::policy::is_always_blocked(address));  // loopback only
    got_v4 = got_v4 || !address.v6;
    got_v6 = got_v6 || address.v6;
  }
  CHECK(got_v4 == has_v4);
  CHECK(got_v6 == has_v6);
  if (has_v4) {
    CHECK(std::find(result.value().begin(), result.value().end(), ip("127.0.0.1")) !=
          result.value().end());
  }
  if (has_v6) {
    CHECK(std::find(result.value().begin(), result.value().end(), ip("::1")) !=
          result.value().end());
  }
}

TEST_CASE("resolver: duplicates removed, order kept", "[resolver]") {
  Resolver resolver({}, [](const std::string&, uint16_t) -> Result<std::vector<IpAddress>> {
    return std::vector<IpAddress>{ip("::1"), ip("127.0.0.1"), ip("::1"), ip("127.0.0.2"),
                                  ip("127.0.0.1")};
  });
  IoThread io;
  auto future = start(io.io(), resolver, "multi.test");
  ResolveResult result = get(future);
  REQUIRE(result.ok());
  CHECK(result.value() == std::vector<IpAddress>{ip("::1"), ip("127.0.0.1"), ip("127.0.0.2")});
}

TEST_CASE("resolver: error wording", "[resolver]") {
  Resolver resolver({}, [](const std::string& host, uint16_t) -> Result<std::vector<IpAddress>> {
    if (host == "empty.test") return std::vector<IpAddress>{};
    if (host == "throws.test") throw std::runtime_error("boom");
    return openshell::make_error(Errc::kNotFound, "Name or service not known");
  });
  IoThread io;
  auto empty = start(io.io(), resolver, "empty.test", 443);
  auto missing = start(io.io(), resolver, "missing.test", 8443);
  auto throws = start(io.io(), resolver, "throws.test", 1);
  auto blank = start(io.io(), resolver, "", 80);
  auto nul = start(io.io(), resolver, std::string("evil.test\0.example", 18), 80);

  ResolveResult r1 = get(empty);
  REQUIRE_FALSE(r1.ok());
  CHECK(r1.error().message == "DNS resolution returned no addresses for empty.test:443");
  CHECK(r1.error().code == Errc::kNotFound);

  ResolveResult r2 = get(missing);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().message ==
        "DNS resolution failed for missing.test:8443: Name or service not known");

  ResolveResult r3 = get(throws);
  REQUIRE_FALSE(r3.ok());
  CHECK(r3.error().message == "DNS resolution failed for throws.test:1: boom");

  ResolveResult r4 = get(blank);
  REQUIRE_FALSE(r4.ok());
  CHECK(r4.error().message == "DNS resolution failed for :80: invalid host name");

  ResolveResult r5 = get(nul);
  REQUIRE_FALSE(r5.ok());
  CHECK(r5.error().code == Errc::kInvalidArgument);
}

TEST_CASE("resolver: a slow lookup does not block others", "[resolver]") {
  Gate gate;
  Resolver resolver({}, [&](const std::string& host, uint16_t) -> Result<std::vector<IpAddress>> {
    if (host == "slow.test") gate.wait();
    return std::vector<IpAddress>{ip(host == "slow.test" ? "127.0.0.9" : "127.0.0.8")};
  });
  IoThread io;
  auto slow = start(io.io(), resolver, "slow.test");
  REQUIRE(gate.wait_for_waiters(1));
  std::vector<std::future<ResolveResult>> fast;
  fast.reserve(20);
  for (int i = 0; i < 20; ++i)
    fast.push_back(start(io.io(), resolver, "fast.test"));
  for (auto& future : fast) {
    REQUIRE(future.wait_for(2s) == std::future_status::ready);
    ResolveResult result = future.get();
    REQUIRE(result.ok());
    CHECK(result.value().front() == ip("127.0.0.8"));
  }
  CHECK(slow.wait_for(0s) == std::future_status::timeout);
  gate.open();
  ResolveResult result = get(slow);
  REQUIRE(result.ok());
  CHECK(result.value().front() == ip("127.0.0.9"));
}

TEST_CASE("resolver: a hung lookup times out, its worker finishes later", "[resolver]") {
  Gate gate;
  std::atomic<int> calls{0};
  ResolverOptions options;
  options.threads = 1;
  options.timeout = 150ms;
  Resolver resolver(options,
                    [&](const std::string& host, uint16_t) -> Result<std::vector<IpAddress>> {
                      ++calls;
                      if (host == "hung.test") gate.wait();
                      return std::vector<IpAddress>{ip("127.0.0.1")};
                    });
  IoThread io;
  const auto begin = std::chrono::steady_clock::now();
  auto hung = start(io.io(), resolver, "hung.test", 443);
  auto queued = start(io.io(), resolver, "queued.test", 443);  // waits behind it, times out too
  ResolveResult r1 = get(hung);
  const auto elapsed = std::chrono::steady_clock::now() - begin;
  REQUIRE_FALSE(r1.ok());
  CHECK(r1.error().code == Errc::kTimeout);
  CHECK(r1.error().message == "DNS resolution failed for hung.test:443: timed out after 150 ms");
  CHECK(elapsed >= 140ms);
  CHECK(elapsed < 3s);
  ResolveResult r2 = get(queued);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().code == Errc::kTimeout);

  gate.open();
  // The abandoned queued lookup is skipped, and the pool serves new lookups again.
  auto after = start(io.io(), resolver, "after.test");
  ResolveResult r3 = get(after);
  REQUIRE(r3.ok());
  resolver.shutdown();
  CHECK(calls == 2);  // hung.test and after.test; queued.test was never run
}

TEST_CASE("resolver: a full queue rejects instead of growing", "[resolver]") {
  Gate gate;
  ResolverOptions options;
  options.threads = 1;
  options.max_pending = 2;
  Resolver resolver(options,
                    [&](const std::string& host, uint16_t) -> Result<std::vector<IpAddress>> {
                      if (host == "block.test") gate.wait();
                      return std::vector<IpAddress>{ip("127.0.0.1")};
                    });
  IoThread io;
  auto running = start(io.io(), resolver, "block.test");
  REQUIRE(gate.wait_for_waiters(1));
  auto q1 = start(io.io(), resolver, "q1.test");
  auto q2 = start(io.io(), resolver, "q2.test");
  auto rejected = start(io.io(), resolver, "q3.test", 443);
  ResolveResult r = get(rejected);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::kLimit);
  CHECK(r.error().message == "DNS resolution failed for q3.test:443: resolver queue full");
  CHECK(resolver.pending() == 2);
  gate.open();
  CHECK(get(running).ok());
  CHECK(get(q1).ok());
  CHECK(get(q2).ok());
}

TEST_CASE("resolver: cancellation completes the lookup with an error", "[resolver]") {
  Gate gate;
  Resolver resolver({}, [&](const std::string&, uint16_t) -> Result<std::vector<IpAddress>> {
    gate.wait();
    return std::vector<IpAddress>{ip("127.0.0.1")};
  });
  IoThread io;
  asio::cancellation_signal signal;
  auto promise = std::make_shared<std::promise<ResolveResult>>();
  auto future = promise->get_future();
  asio::co_spawn(
      io.io(),
      [&resolver, promise]() -> asio::awaitable<void> {
        promise->set_value(co_await resolver.resolve("cancel.test", 80));
      },
      asio::bind_cancellation_slot(signal.slot(), asio::detached));
  REQUIRE(gate.wait_for_waiters(1));
  asio::post(io.io(), [&signal] { signal.emit(asio::cancellation_type::terminal); });
  ResolveResult result = get(future);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().message == "DNS resolution failed for cancel.test:80: lookup cancelled");
  gate.open();
}

TEST_CASE("resolver: completes on the caller's executor", "[resolver]") {
  Resolver resolver({}, [](const std::string&, uint16_t) -> Result<std::vector<IpAddress>> {
    return std::vector<IpAddress>{ip("127.0.0.1")};
  });
  asio::io_context io;
  auto strand = asio::make_strand(io);
  std::atomic<int> on_strand{0};
  for (int i = 0; i < 8; ++i) {
    asio::co_spawn(
        strand,
        [&]() -> asio::awaitable<void> {
          ResolveResult result = co_await resolver.resolve("name.test", 80);
          if (result.ok() && strand.running_in_this_thread()) ++on_strand;
        },
        asio::detached);
  }
  std::thread second([&] { io.run(); });
  io.run();
  second.join();
  CHECK(on_strand == 8);
}

TEST_CASE("resolver: shutdown fails queued lookups and refuses new ones", "[resolver]") {
  Gate gate;
  ResolverOptions options;
  options.threads = 1;
  Resolver resolver(options, [&](const std::string&, uint16_t) -> Result<std::vector<IpAddress>> {
    gate.wait();
    return std::vector<IpAddress>{ip("127.0.0.1")};
  });
  IoThread io;
  auto running = start(io.io(), resolver, "running.test");
  REQUIRE(gate.wait_for_waiters(1));
  auto queued = start(io.io(), resolver, "queued.test", 443);
  while (resolver.pending() == 0)
    std::this_thread::sleep_for(1ms);

  std::thread stopper([&] { resolver.shutdown(); });  // joins: waits for the running lookup
  ResolveResult r = get(queued);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "DNS resolution failed for queued.test:443: resolver shut down");
  gate.open();
  stopper.join();
  CHECK(get(running).ok());  // a lookup already running is not thrown away

  auto late = start(io.io(), resolver, "late.test");
  ResolveResult r2 = get(late);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().code == Errc::kUnavailable);
  resolver.shutdown();  // idempotent
}

namespace {

size_t threads_of_this_process() {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task"))
    ++count;
  return count;
}

}  // namespace

TEST_CASE("resolver: workers start with the lookups that need them, up to the limit",
          "[resolver]") {
  Gate gate;
  ResolverOptions options;
  options.threads = 2;
  const size_t before = threads_of_this_process();
  Resolver resolver(options, [&](const std::string&, uint16_t) -> Result<std::vector<IpAddress>> {
    gate.wait();
    return std::vector<IpAddress>{ip("127.0.0.1")};
  });
  CHECK(threads_of_this_process() == before);  // a proxy that never resolves starts none
  IoThread io;
  const size_t idle = threads_of_this_process();
  auto first = start(io.io(), resolver, "one.test");
  auto second = start(io.io(), resolver, "two.test");
  REQUIRE(gate.wait_for_waiters(2));
  auto third = start(io.io(), resolver, "three.test");  // queued: both workers are busy
  while (resolver.pending() == 0)
    std::this_thread::sleep_for(1ms);
  CHECK(threads_of_this_process() == idle + 2);
  gate.open();
  CHECK(get(first).ok());
  CHECK(get(second).ok());
  CHECK(get(third).ok());
}
