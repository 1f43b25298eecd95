// The bypass monitor (DESIGN.md "Network path"): every connect, and every send that names a
// destination, made inside a sandbox stops in the kernel until this monitor has looked at it.
// Destinations other than loopback cannot be reached from the sandbox's namespace; the monitor
// reports who tried (pid, executable, destination) and lets the call go on to fail as it would
// have (ENETUNREACH). It decides nothing: the namespace is the boundary, this is the witness.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "openshell/core/result.hpp"
#include "openshell/runtime/connect_owners.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

struct BypassAttempt {
  pid_t pid = 0;        // in the monitor's pid namespace (the host's)
  std::string exe;      // the caller's executable; empty when it could not be read
  std::string call;     // connect | sendto | sendmsg | sendmmsg
  std::string address;  // the destination, textual (IPv4, or IPv6 without brackets)
  uint16_t port = 0;
  std::string protocol;     // tcp | udp | unknown (the socket's protocol)
  uint64_t suppressed = 0;  // attempts the rate limit dropped since the previous report
};

// The destination a sockaddr names when it is one the sandbox cannot reach by itself: AF_INET or
// AF_INET6 and not loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104; those stay inside the
// namespace, where the proxy listens). nullopt for anything else, including short or malformed
// addresses.
struct BypassDestination {
  std::string address;
  uint16_t port = 0;
};
std::optional<BypassDestination> bypass_destination(const void* sockaddr_bytes, size_t length);

struct BypassMonitorOptions {
  // Reports per second after the burst; the rest are counted in the next report (spec §7.1's
  // log rate: 5/s, burst 10).
  double reports_per_second = 5.0;
  double burst = 10.0;
  // Connects to 127.0.0.1:<proxy_port> are recorded here (socket inode -> pid) for the identity
  // lookup; 0 or null: not recorded.
  uint16_t proxy_port = 0;
  std::shared_ptr<ConnectOwners> connect_owners;
};

class BypassMonitor {
 public:
  // Called on the monitor's thread, after the caller's system call was let go.
  using Report = std::function<void(const BypassAttempt&)>;

  // Takes the seccomp listener from Sandbox::take_bypass_listener and answers every
  // notification on a thread of its own until stop(), or until every process of the sandbox
  // has gone.
  static Result<std::unique_ptr<BypassMonitor>> start(UniqueFd listener, Report report,
                                                      BypassMonitorOptions options = {});

  BypassMonitor(const BypassMonitor&) = delete;
  BypassMonitor& operator=(const BypassMonitor&) = delete;
  ~BypassMonitor();

  // Joins the thread and closes the listener: later trapped calls of a still-running sandbox
  // would fail with ENOSYS, so stop only once the sandbox has ended.
  void stop();

  uint64_t attempts() const { return attempts_.load(std::memory_order_relaxed); }
  // Attempts never reported because of the rate limit.
  uint64_t unreported() const { return unreported_.load(std::memory_order_relaxed); }
  // The thread ended by itself: every watched process is gone (stop() then only joins).
  bool finished() const { return finished_.load(std::memory_order_acquire); }

 private:
  BypassMonitor(UniqueFd listener, UniqueFd wakeup, Report report, BypassMonitorOptions options);
  void serve();
  void answer_one();
  void publish(BypassAttempt attempt);

  UniqueFd listener_;
  UniqueFd wakeup_;  // eventfd: stop() writes it
  Report report_;
  BypassMonitorOptions options_;
  double tokens_;
  int64_t refilled_ns_ = 0;
  uint64_t pending_suppressed_ = 0;
  std::atomic<uint64_t> attempts_{0};
  std::atomic<uint64_t> unreported_{0};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace openshell::runtime
