// The proxy's identity source in sandbox mode: the runtime's procfs lookup (DESIGN.md "Identity")
// behind proxy::IdentitySource, run on a small pool of its own so I/O threads never block.
#pragma once

#include <sys/types.h>

#include <asio/thread_pool.hpp>
#include <memory>

#include "openshell/proxy/identity_source.hpp"
#include "openshell/runtime/identity.hpp"

namespace openshell::sandbox {

// Lookups are short procfs scans; the first sight of an executable hashes it, which is what
// can take milliseconds. Two threads keep one large first-time hash from stalling every lookup.
inline constexpr std::size_t kIdentifyThreads = 2;

class ProcessIdentitySource final : public proxy::IdentitySource {
 public:
  // `sandbox_pid`: the sandbox's init, both inside the network namespace and the root of the
  // process tree (ancestors stop there, so nothing outside the sandbox ever matches).
  // `socket_diag` and `connect_owners` make lookups fast (see IdentityResolver); either may be
  // null.
  ProcessIdentitySource(pid_t sandbox_pid, std::shared_ptr<runtime::SocketDiag> socket_diag,
                        std::shared_ptr<const runtime::ConnectOwners> connect_owners);
  ~ProcessIdentitySource() override;
  ProcessIdentitySource(const ProcessIdentitySource&) = delete;
  ProcessIdentitySource& operator=(const ProcessIdentitySource&) = delete;

  void identify(const asio::ip::tcp::endpoint& client, const asio::ip::tcp::endpoint& local,
                proxy::IdentityCallback done) override;

  // Finishes the lookups in flight and stops the pool; later calls fail at once.
  void stop();

 private:
  pid_t init_pid_;
  // Shared with queued jobs, so a job never outlives what it uses.
  std::shared_ptr<runtime::IdentityResolver> resolver_;
  asio::thread_pool pool_{kIdentifyThreads};
};

}  // namespace openshell::sandbox
