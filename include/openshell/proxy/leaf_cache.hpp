// Per-host leaf certificates, minted once on a worker pool and kept in a bounded LRU (spec §3.3),
// awaited from connection coroutines without blocking their executors.
#pragma once

// GCC 12 at -O2 reports a false -Wnull-dereference inside Asio 1.22's scheduler (see
// resolver.hpp); silence it around the first inclusion of Asio.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/awaitable.hpp>
#include <asio/thread_pool.hpp>
#pragma GCC diagnostic pop

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "openshell/core/result.hpp"
#include "openshell/proxy/tls_ca.hpp"

namespace openshell::proxy::tls {
namespace detail {
struct LeafCacheState;
}

// Spec §3.3: 256 hosts. A leaf costs a few KB (two parsed certificates, a key, an SSL config);
// a sandbox rarely talks to more hosts, and a re-mint is a millisecond or two.
inline constexpr std::size_t kDefaultLeafCacheSize = 256;

using LeafResult = Result<std::shared_ptr<const LeafCertificate>>;

class LeafCache {
 public:
  struct Stats {
    uint64_t hits = 0;       // answered from the cache
    uint64_t misses = 0;     // started a mint
    uint64_t evictions = 0;  // least recently used entries dropped to make room
    std::size_t size = 0;    // entries now
    uint64_t coalesced = 0;  // joined a mint already in flight for the same host
  };

  // `ca` must outlive the cache; `pool` runs the mints and must outlive every get() in flight.
  // Capacity 0 is taken as 1. Where the spec clears the whole map when full, this evicts the
  // least recently used entry: hot hosts keep their leaves.
  LeafCache(const CertificateAuthority& ca, asio::thread_pool& pool,
            std::size_t capacity = kDefaultLeafCacheSize);
  // Waits for a mint running on the pool (it uses the CA); queued ones then fail their waiters.
  ~LeafCache();
  LeafCache(const LeafCache&) = delete;
  LeafCache& operator=(const LeafCache&) = delete;

  // The leaf for `host` (lowercased here). A hit completes at once, without a thread hop; a miss
  // mints on the pool and resumes the coroutine on its own executor. Concurrent misses for one
  // host share a single mint; a failed mint reaches all of them and is not cached. Honours the
  // coroutine's cancellation (completes with an error). Safe if the coroutine's io_context is
  // stopped or destroyed meanwhile. Never throws.
  asio::awaitable<LeafResult> get(std::string host);

  Stats stats() const;
  std::size_t capacity() const;

 private:
  // Shared with the mint jobs, which may outlive the cache while the pool still holds them.
  std::shared_ptr<detail::LeafCacheState> state_;
  asio::thread_pool& pool_;
};

}  // namespace openshell::proxy::tls
