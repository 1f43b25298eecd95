// A sandbox's lifecycle as seen by the runtime (runtime-spec §5): signals forwarded to the main
// process group, the timeout, the PTY pump, and the exit code `run` reports.
#pragma once

#include <signal.h>

#include <chrono>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/runtime/main_session.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

inline constexpr int kExitTimeout = 124;
// After a forwarded SIGTERM/SIGINT/SIGHUP/SIGQUIT the sandbox gets this long before SIGKILL.
inline constexpr std::chrono::milliseconds kForwardKillGrace{10'000};
// After the --timeout SIGTERM, this long before SIGKILL.
inline constexpr std::chrono::milliseconds kTimeoutKillGrace{2'000};
// Output still buffered in the PTY after the sandbox ended is copied for at most this long.
inline constexpr std::chrono::milliseconds kPtyDrainLimit{2'000};

// The signals the runtime handles: SIGINT, SIGTERM, SIGHUP, SIGQUIT (forwarded) and SIGWINCH
// (window size). Blocked in the calling thread, so create this before any thread starts and
// every thread inherits the mask; they are then read synchronously from fd().
class LifecycleSignals {
 public:
  static Result<LifecycleSignals> block();
  LifecycleSignals(LifecycleSignals&&) noexcept = default;
  LifecycleSignals& operator=(LifecycleSignals&&) noexcept = default;
  ~LifecycleSignals();

  int fd() const { return fd_.get(); }

 private:
  LifecycleSignals(UniqueFd fd, const sigset_t& previous)
      : fd_(std::move(fd)), previous_(previous) {}
  UniqueFd fd_;
  sigset_t previous_{};
};

struct SuperviseOptions {
  std::chrono::milliseconds timeout{0};  // 0: none
  // PTY mode: the master end; its output goes to `terminal_out`, `terminal_in` goes into it.
  // -1: pipe mode (the child has the caller's own stdio; nothing to pump).
  int pty_master = -1;
  int terminal_in = 0;
  int terminal_out = 1;
  // PTY mode: also gets every chunk of the child's output (SSH attachments); may be null.
  MainSession* main_session = nullptr;
};

// Waits for `sandbox` to end while forwarding signals, enforcing the timeout and pumping the
// PTY. Returns the exit code `run` reports: the main process's code, 128+N for signal N, 124
// after the timeout, 125 when the spawner vanished (the sandbox is killed then).
int supervise(Spawner& spawner, const Sandbox& sandbox, const LifecycleSignals& signals,
              const SuperviseOptions& options, const core::Logger& log);

}  // namespace openshell::runtime
