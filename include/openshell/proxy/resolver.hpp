// Name resolution off the I/O threads (spec §2.8 step 9, system DNS part): a small pool of
// threads running getaddrinfo, awaited from a coroutine without blocking its executor.
#pragma once

// GCC 12 at -O2 reports a false -Wnull-dereference inside Asio 1.22's scheduler, inlined from
// its epoll reactor. The warning takes the state at the header's own location, so silencing it
// around the first inclusion of Asio keeps the warning wall clean without hiding our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/awaitable.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/policy/ip_class.hpp"

namespace openshell::proxy {

// getaddrinfo blocks, so a few threads keep one slow name from delaying every other CONNECT;
// more than a handful only multiplies sockets towards the same recursive resolver.
inline constexpr std::size_t kDefaultResolverThreads = 4;
// glibc's stub resolver retries for up to 5 s × attempts; a client waiting longer than this has
// given up already. The lookup keeps its thread until glibc returns, the connection does not.
inline constexpr std::chrono::milliseconds kLookupTimeout{5000};
// Lookups waiting for a thread. Past this the pool is saturated (a dead resolver or a flood of
// new names) and queueing more would only grow memory and latency, so new lookups fail fast.
inline constexpr std::size_t kMaxPendingLookups = 256;

// Addresses in resolver order, duplicates removed; never empty on success. Errors carry the
// spec's wording: `DNS resolution returned no addresses for H:P` and
// `DNS resolution failed for H:P: <reason>`.
using ResolveResult = Result<std::vector<policy::IpAddress>>;

// The blocking lookup a worker runs. Its error message is the reason only (e.g. gai_strerror);
// the pool adds the `DNS resolution failed for H:P: ` prefix, deduplicates and rejects empty.
using LookupFunction =
    std::function<Result<std::vector<policy::IpAddress>>(const std::string& host, uint16_t port)>;

// getaddrinfo(host, AF_UNSPEC, SOCK_STREAM), the default LookupFunction.
Result<std::vector<policy::IpAddress>> system_lookup(const std::string& host, uint16_t port);

struct ResolverOptions {
  std::size_t threads = kDefaultResolverThreads;
  std::size_t max_pending = kMaxPendingLookups;
  std::chrono::milliseconds timeout = kLookupTimeout;
};

class Resolver {
 public:
  explicit Resolver(ResolverOptions options = {}, LookupFunction lookup = system_lookup);
  ~Resolver();  // shutdown()
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Completes on the awaiting coroutine's executor. IP literals (no brackets) return at once.
  // A lookup that outlives options.timeout completes with an error while its worker finishes
  // in the background. Honours the coroutine's cancellation (completes with an error). Never
  // throws.
  asio::awaitable<ResolveResult> resolve(std::string host, uint16_t port);

  // Stops taking lookups, completes queued ones with an error and joins the threads (a worker
  // inside getaddrinfo is waited for). Idempotent. Coroutines still waiting afterwards complete
  // on their own executors without touching the pool, so it may then be destroyed.
  void shutdown();

  // Lookups queued and not yet picked up by a thread (for status and tests).
  std::size_t pending() const;

 private:
  struct Lookup;

  void worker_loop();
  bool enqueue(const std::shared_ptr<Lookup>& lookup);
  static void finish(const std::shared_ptr<Lookup>& lookup, ResolveResult result);

  ResolverOptions options_;
  LookupFunction lookup_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Lookup>> queue_;
  bool stopping_ = false;
  std::size_t idle_ = 0;              // workers waiting for a lookup
  std::vector<std::thread> threads_;  // grows on demand in enqueue(), under mutex_
};

}  // namespace openshell::proxy
