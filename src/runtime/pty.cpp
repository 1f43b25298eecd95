// PTY allocation, window size and raw mode for the caller's terminal.
#include "openshell/runtime/pty.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <utility>

namespace openshell::runtime {

Result<Pty> open_pty() {
  Pty pty;
  pty.master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.master) return Error::from_errno("posix_openpt");
  if (::grantpt(pty.master.get()) != 0) return Error::from_errno("grantpt");
  if (::unlockpt(pty.master.get()) != 0) return Error::from_errno("unlockpt");
  char name[128];
  if (const int err = ::ptsname_r(pty.master.get(), name, sizeof name); err != 0) {
    return Error::from_errno("ptsname_r", err);
  }
  pty.slave_path = name;
  pty.slave.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.slave) return Error::from_errno("open " + pty.slave_path);
  const int flags = ::fcntl(pty.master.get(), F_GETFL);
  if (flags < 0 || ::fcntl(pty.master.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return Error::from_errno("fcntl O_NONBLOCK");
  }
  return pty;
}

void copy_window_size(int terminal, int pty_master) {
  winsize size{};
  if (::ioctl(terminal, TIOCGWINSZ, &size) != 0 || size.ws_row == 0 || size.ws_col == 0) {
    size = winsize{};
    size.ws_row = kDefaultPtyRows;
    size.ws_col = kDefaultPtyColumns;
  }
  ::ioctl(pty_master, TIOCSWINSZ, &size);
}

Result<RawTerminal> RawTerminal::enter(int fd) {
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0) return Error::from_errno("tcgetattr");
  termios raw = saved;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) return Error::from_errno("tcsetattr");
  return RawTerminal(fd, saved);
}

RawTerminal::RawTerminal(RawTerminal&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), saved_(other.saved_) {}

RawTerminal::~RawTerminal() {
  if (fd_ >= 0) ::tcsetattr(fd_, TCSADRAIN, &saved_);
}

}  // namespace openshell::runtime
