// The DNS resolver pool: blocking getaddrinfo on a few threads, results handed back to the
// awaiting coroutine's executor, each wait bounded by a timeout.
#include "openshell/proxy/resolver.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/any_io_executor.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

namespace openshell::proxy {
namespace {

using policy::IpAddress;

std::string host_port(const std::string& host, uint16_t port) {
  return host + ":" + std::to_string(port);
}

Error resolution_failed(const std::string& host, uint16_t port, Errc code, std::string_view why) {
  std::string message = "DNS resolution failed for " + host_port(host, port) + ": ";
  message += why;
  return make_error(code, std::move(message));
}

std::vector<IpAddress> without_duplicates(const std::vector<IpAddress>& addresses) {
  std::vector<IpAddress> unique;
  unique.reserve(addresses.size());
  for (const IpAddress& address : addresses) {
    if (std::find(unique.begin(), unique.end(), address) == unique.end()) {
      unique.push_back(address);
    }
  }
  return unique;
}

struct AddrinfoDeleter {
  void operator()(addrinfo* list) const { freeaddrinfo(list); }
};

}  // namespace

// One lookup, shared by the awaiting coroutine and the worker that runs it. The coroutine's
// executor and timer live in the coroutine frame; the pointers to them are published under
// `mutex` and cleared before the frame goes away, so a worker that finishes late (after a
// timeout, or after the io_context is gone) touches nothing that has been destroyed.
struct Resolver::Lookup {
  std::string host;
  uint16_t port = 0;

  std::mutex mutex;
  std::optional<ResolveResult> result;
  const asio::any_io_executor* executor = nullptr;  // null: nobody is waiting any more
  asio::steady_timer* timer = nullptr;

  Lookup(std::string h, uint16_t p) : host(std::move(h)), port(p) {}

  bool abandoned() {
    std::lock_guard lock(mutex);
    return executor == nullptr;
  }
};

namespace {

// Unpublishes the waiter when the coroutine stops waiting (normally, by exception or because
// its frame is destroyed with a suspended io_context).
class WaiterGuard {
 public:
  WaiterGuard(std::mutex& mutex, const asio::any_io_executor*& executor, asio::steady_timer*& timer)
      : mutex_(mutex), executor_(executor), timer_(timer) {}
  ~WaiterGuard() { release(); }
  WaiterGuard(const WaiterGuard&) = delete;
  WaiterGuard& operator=(const WaiterGuard&) = delete;

  void release() {
    std::lock_guard lock(mutex_);
    executor_ = nullptr;
    timer_ = nullptr;
  }

 private:
  std::mutex& mutex_;
  const asio::any_io_executor*& executor_;
  asio::steady_timer*& timer_;
};

}  // namespace

Result<std::vector<policy::IpAddress>> system_lookup(const std::string& host,
                                                     [[maybe_unused]] uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &raw);
  std::unique_ptr<addrinfo, AddrinfoDeleter> list(raw);
  if (rc != 0) {
    std::string why = gai_strerror(rc);
    if (rc == EAI_SYSTEM) {
      why += ": ";
      why += std::strerror(errno);  // NOLINT(concurrency-mt-unsafe): glibc's table is static
    }
    return make_error(rc == EAI_NONAME ? Errc::kNotFound : Errc::kUnavailable, std::move(why));
  }
  std::vector<IpAddress> addresses;
  for (const addrinfo* entry = list.get(); entry != nullptr; entry = entry->ai_next) {
    IpAddress address;
    if (entry->ai_family == AF_INET && entry->ai_addrlen >= sizeof(sockaddr_in)) {
      sockaddr_in v4{};
      std::memcpy(&v4, entry->ai_addr, sizeof v4);
      std::memcpy(address.bytes.data(), &v4.sin_addr, 4);
    } else if (entry->ai_family == AF_INET6 && entry->ai_addrlen >= sizeof(sockaddr_in6)) {
      sockaddr_in6 v6{};
      std::memcpy(&v6, entry->ai_addr, sizeof v6);
      address.v6 = true;
      std::memcpy(address.bytes.data(), &v6.sin6_addr, 16);
    } else {
      continue;
    }
    addresses.push_back(address);
  }
  return addresses;
}

Resolver::Resolver(ResolverOptions options, LookupFunction lookup)
    : options_(options), lookup_(lookup ? std::move(lookup) : LookupFunction(system_lookup)) {
  options_.threads = std::max<std::size_t>(options_.threads, 1);
  threads_.reserve(options_.threads);
}

Resolver::~Resolver() {
  shutdown();
}

std::size_t Resolver::pending() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void Resolver::shutdown() {
  std::deque<std::shared_ptr<Lookup>> orphans;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    orphans.swap(queue_);
  }
  wake_.notify_all();
  for (const std::shared_ptr<Lookup>& lookup : orphans) {
    finish(lookup,
           resolution_failed(lookup->host, lookup->port, Errc::kUnavailable, "resolver shut down"));
  }
  for (std::thread& thread : threads_) {
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }
}

bool Resolver::enqueue(const std::shared_ptr<Lookup>& lookup) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= options_.max_pending) return false;
    queue_.push_back(lookup);
    // Workers start on demand, up to options_.threads: a proxy that never resolves a name (a
    // sandbox running a short command) never pays for creating and joining them.
    if (idle_ < queue_.size() && threads_.size() < options_.threads) {
      try {
        threads_.emplace_back([this] { worker_loop(); });
      } catch (const std::system_error&) {
        if (threads_.empty()) {  // nobody would ever pick it up
          queue_.pop_back();
          return false;
        }
      }
    }
  }
  wake_.notify_one();
  return true;
}

void Resolver::worker_loop() {
  for (;;) {
    std::shared_ptr<Lookup> lookup;
    {
      std::unique_lock lock(mutex_);
      ++idle_;
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (stopping_) return;
      lookup = std::move(queue_.front());
      queue_.pop_front();
    }
    // Its coroutine already gave up (timeout, cancellation): spare the thread for live ones.
    if (lookup->abandoned()) continue;

    std::optional<ResolveResult> result;
    try {
      Result<std::vector<IpAddress>> found = lookup_(lookup->host, lookup->port);
      if (!found) {
        result.emplace(resolution_failed(lookup->host, lookup->port, found.error().code,
                                         found.error().message));
      } else if (std::vector<IpAddress> unique = without_duplicates(found.value());
                 unique.empty()) {
        result.emplace(make_error(Errc::kNotFound, "DNS resolution returned no addresses for " +
                                                       host_port(lookup->host, lookup->port)));
      } else {
        result.emplace(std::move(unique));
      }
    } catch (const std::exception& e) {
      result.emplace(resolution_failed(lookup->host, lookup->port, Errc::kInternal, e.what()));
    }
    finish(lookup, std::move(*result));
  }
}

void Resolver::finish(const std::shared_ptr<Lookup>& lookup, ResolveResult result) {
  std::lock_guard lock(lookup->mutex);
  if (lookup->result || lookup->executor == nullptr) return;
  lookup->result.emplace(std::move(result));
  // Wake the coroutine on its own executor; the timer is only touched there, under the mutex,
  // and only while the coroutine still waits on it.
  asio::post(*lookup->executor, [lookup] {
    std::lock_guard inner(lookup->mutex);
    if (lookup->timer != nullptr) lookup->timer->cancel();
  });
}

asio::awaitable<ResolveResult> Resolver::resolve(std::string host, uint16_t port) {
  if (std::optional<IpAddress> literal = IpAddress::parse(host)) {
    co_return std::vector<IpAddress>{*literal};
  }
  // getaddrinfo would silently resolve the prefix before a NUL: a different name.
  if (host.empty() || host.find('\0') != std::string::npos) {
    co_return resolution_failed(host, port, Errc::kInvalidArgument, "invalid host name");
  }
  // Nothing of the pool is touched after the wait: a late wake-up must not need `this`.
  const std::chrono::milliseconds timeout = options_.timeout;
  try {
    const asio::any_io_executor executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, timeout);
    auto lookup = std::make_shared<Lookup>(host, port);
    lookup->executor = &executor;
    lookup->timer = &timer;
    WaiterGuard waiter(lookup->mutex, lookup->executor, lookup->timer);

    if (!enqueue(lookup)) {
      std::lock_guard lock(mutex_);
      co_return resolution_failed(host, port, stopping_ ? Errc::kUnavailable : Errc::kLimit,
                                  stopping_ ? "resolver shut down" : "resolver queue full");
    }
    auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    waiter.release();
    std::lock_guard lock(lookup->mutex);
    if (lookup->result) co_return std::move(*lookup->result);
    if (ec == asio::error::operation_aborted) {
      co_return resolution_failed(host, port, Errc::kUnavailable, "lookup cancelled");
    }
    co_return resolution_failed(host, port, Errc::kTimeout,
                                "timed out after " + std::to_string(timeout.count()) + " ms");
  } catch (const std::exception& e) {
    co_return resolution_failed(host, port, Errc::kInternal, e.what());
  }
}

}  // namespace openshell::proxy
