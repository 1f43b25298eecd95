// The runtime's wait loop: one poll over the signalfd, the spawner's channel and (PTY mode) the
// terminal and the PTY master, with the timeout and kill-grace deadlines.
#include "openshell/runtime/supervisor.hpp"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "openshell/runtime/pty.hpp"

namespace openshell::runtime {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kLifecycleSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
// One write to the caller's (blocking) stdout stays below the pipe's atomic size, so a write the
// poll said was possible does not stall the loop for long.
constexpr size_t kPumpChunk = 4096;
// ^D: what a terminal sends at the start of a line to mean end of input.
constexpr char kEndOfInput = 0x04;

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitSetupFailed;
}

int poll_timeout(std::optional<Clock::time_point> a, std::optional<Clock::time_point> b) {
  std::optional<Clock::time_point> next = a;
  if (b && (!next || *b < *next)) next = b;
  if (!next) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*next - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()) + 1);
}

// The bytes in flight one way through the PTY.
struct Buffer {
  char data[kPumpChunk];
  size_t size = 0;
  size_t offset = 0;
  bool empty() const { return offset == size; }
};

enum class Fill { kData, kAgain, kEnd };

// Reads into an empty buffer. kEnd: EOF or a hard error (EIO: the PTY's last slave closed).
Fill fill(int fd, Buffer& buffer) {
  const ssize_t got = ::read(fd, buffer.data, sizeof buffer.data);
  if (got > 0) {
    buffer.size = static_cast<size_t>(got);
    buffer.offset = 0;
    return Fill::kData;
  }
  return got < 0 && (errno == EAGAIN || errno == EINTR) ? Fill::kAgain : Fill::kEnd;
}

// Writes what it can; false on a hard error.
bool drain(int fd, Buffer& buffer) {
  const ssize_t put = ::write(fd, buffer.data + buffer.offset, buffer.size - buffer.offset);
  if (put >= 0) {
    buffer.offset += static_cast<size_t>(put);
    return true;
  }
  return errno == EAGAIN || errno == EINTR;
}

class Loop {
 public:
  Loop(Spawner& spawner, const Sandbox& sandbox, const LifecycleSignals& signals,
       const SuperviseOptions& options, const core::Logger& log)
      : spawner_(spawner), sandbox_(sandbox), signals_(signals), options_(options), log_(log) {
    if (options.timeout.count() > 0) timeout_at_ = Clock::now() + options.timeout;
  }

  int run() {
    while (!exit_code_) {
      pollfd fds[5];
      nfds_t count = 0;
      fds[count++] = {signals_.fd(), POLLIN, 0};
      fds[count++] = {spawner_.event_fd(), POLLIN, 0};
      const nfds_t pump_first = count;
      if (pty()) count = add_pump_fds(fds, count, /*input=*/true);
      const int polled = ::poll(fds, count, poll_timeout(timeout_at_, kill_at_));
      if (polled < 0 && errno != EINTR) {
        log_.error("supervisor: poll: {}", std::strerror(errno));
        kill_now();
        return kExitSetupFailed;
      }
      if (polled > 0 && (fds[0].revents & POLLIN) != 0) take_signals();
      if (polled > 0 && fds[1].revents != 0) take_exit();
      if (polled > 0 && pty()) pump(fds + pump_first, count - pump_first, true);
      check_deadlines();
    }
    if (pty()) drain_pty();
    return timed_out_ ? kExitTimeout : *exit_code_;
  }

 private:
  bool pty() const { return options_.pty_master >= 0 && !master_closed_; }

  nfds_t add_pump_fds(pollfd* fds, nfds_t count, bool input) {
    short master_events = 0;
    if (to_user_.empty()) master_events |= POLLIN;
    if (!to_child_.empty()) master_events |= POLLOUT;
    fds[count++] = {options_.pty_master, master_events, 0};
    fds[count++] = {options_.terminal_out, static_cast<short>(to_user_.empty() ? 0 : POLLOUT), 0};
    const bool want_input = input && !input_closed_ && to_child_.empty();
    fds[count++] = {want_input ? options_.terminal_in : -1, POLLIN, 0};
    return count;
  }

  // fds: master, terminal_out, terminal_in (as add_pump_fds laid them out).
  void pump(const pollfd* fds, nfds_t, bool input) {
    const pollfd& master = fds[0];
    if ((master.revents & POLLOUT) != 0 && !drain(options_.pty_master, to_child_)) {
      to_child_ = Buffer{};
    }
    if ((master.revents & (POLLIN | POLLHUP | POLLERR)) != 0 && to_user_.empty()) {
      const Fill filled = fill(options_.pty_master, to_user_);
      if (filled == Fill::kEnd) master_closed_ = true;  // EIO: every holder of the slave is gone
      if (filled == Fill::kData && options_.main_session != nullptr) {
        options_.main_session->publish({to_user_.data, to_user_.size});
      }
    }
    if ((fds[1].revents & (POLLOUT | POLLERR)) != 0 && !to_user_.empty() &&
        !drain(options_.terminal_out, to_user_)) {
      to_user_ = Buffer{};  // nobody reads our output any more: drop it
    }
    if (input && (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && to_child_.empty()) {
      if (fill(options_.terminal_in, to_child_) == Fill::kEnd) {
        // End of our input: tell the child the way a terminal would.
        input_closed_ = true;
        to_child_.data[0] = kEndOfInput;
        to_child_.size = 1;
        to_child_.offset = 0;
      }
    }
  }

  void take_signals() {
    signalfd_siginfo info;
    while (::read(signals_.fd(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      const int signal_number = static_cast<int>(info.ssi_signo);
      if (signal_number == SIGWINCH) {
        if (options_.pty_master >= 0) {
          const int terminal =
              ::isatty(options_.terminal_in) == 1 ? options_.terminal_in : options_.terminal_out;
          copy_window_size(terminal, options_.pty_master);
        }
        continue;
      }
      log_.info("signal {}: forwarding it to the sandbox", signal_number);
      if (auto sent = sandbox_.signal(signal_number); !sent.ok()) {
        log_.debug("forwarding signal {}: {}", signal_number, sent.error().message);
      }
      if (!kill_at_) kill_at_ = Clock::now() + kForwardKillGrace;
    }
  }

  void take_exit() {
    for (;;) {
      auto exit = spawner_.read_exit();
      if (!exit.ok()) {
        log_.error("{}; killing the sandbox", exit.error().message);
        kill_now();
        exit_code_ = kExitSetupFailed;
        return;
      }
      if (!exit->has_value()) return;
      if ((*exit)->pid == sandbox_.pid()) {
        exit_code_ = exit_code_of((*exit)->wait_status);
        return;
      }
    }
  }

  void check_deadlines() {
    const auto now = Clock::now();
    if (timeout_at_ && now >= *timeout_at_) {
      timeout_at_.reset();
      timed_out_ = true;
      log_.warn("timeout of {} s reached: sending SIGTERM, SIGKILL in {} s",
                static_cast<double>(options_.timeout.count()) / 1000.0,
                static_cast<double>(kTimeoutKillGrace.count()) / 1000.0);
      (void)sandbox_.signal(SIGTERM);
      kill_at_ = now + kTimeoutKillGrace;
    }
    if (kill_at_ && now >= *kill_at_) {
      kill_at_.reset();
      log_.warn("the sandbox did not end in time: SIGKILL");
      kill_now();
    }
  }

  void kill_now() { (void)sandbox_.signal(SIGKILL); }

  // The sandbox has ended: copy what is still buffered in the PTY, for a bounded time.
  void drain_pty() {
    const auto until = Clock::now() + kPtyDrainLimit;
    while (pty() && Clock::now() < until) {
      pollfd fds[3];
      const nfds_t count = add_pump_fds(fds, 0, /*input=*/false);
      const int polled = ::poll(fds, count, poll_timeout(until, std::nullopt));
      if (polled <= 0) break;
      pump(fds, count, false);
    }
    while (!to_user_.empty() && drain(options_.terminal_out, to_user_)) {
    }
  }

  Spawner& spawner_;
  const Sandbox& sandbox_;
  const LifecycleSignals& signals_;
  const SuperviseOptions& options_;
  const core::Logger& log_;
  std::optional<Clock::time_point> timeout_at_;
  std::optional<Clock::time_point> kill_at_;
  std::optional<int> exit_code_;
  bool timed_out_ = false;
  Buffer to_child_;
  Buffer to_user_;
  bool input_closed_ = false;
  bool master_closed_ = false;
};

}  // namespace

Result<LifecycleSignals> LifecycleSignals::block() {
  sigset_t set;
  sigemptyset(&set);
  for (const int signal_number : kLifecycleSignals)
    sigaddset(&set, signal_number);
  sigset_t previous;
  if (const int err = ::pthread_sigmask(SIG_BLOCK, &set, &previous); err != 0) {
    return Error::from_errno("pthread_sigmask", err);
  }
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) return Error::from_errno("signalfd");
  return LifecycleSignals(std::move(fd), previous);
}

LifecycleSignals::~LifecycleSignals() {
  if (!fd_) return;
  // A signal that came after the loop ended would otherwise act on unblocking and turn the exit
  // code we are about to return into a death by that signal: the sandbox is over, drop it.
  signalfd_siginfo info;
  while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
  }
  ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

int supervise(Spawner& spawner, const Sandbox& sandbox, const LifecycleSignals& signals,
              const SuperviseOptions& options, const core::Logger& log) {
  return Loop(spawner, sandbox, signals, options, log).run();
}

}  // namespace openshell::runtime
