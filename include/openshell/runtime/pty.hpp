// The PTY a sandbox gets when the caller's stdin and stdout are both terminals (DESIGN.md
// "Events and logs"): the child's controlling terminal, pumped to and from the caller's.
#pragma once

#include <termios.h>

#include <string>

#include "openshell/core/result.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

// The size a PTY gets when the caller has no terminal to copy it from.
inline constexpr unsigned short kDefaultPtyRows = 24;
inline constexpr unsigned short kDefaultPtyColumns = 80;

struct Pty {
  UniqueFd master;         // non-blocking, close-on-exec: the runtime's end
  UniqueFd slave;          // close-on-exec: handed to the child as its stdio
  std::string slave_path;  // /dev/pts/N: the child's Landlock rules must name it
};

// A fresh PTY pair; neither end becomes the caller's controlling terminal.
Result<Pty> open_pty();

// Gives the PTY the window size of `terminal` (the default size when it is not a terminal).
// The kernel then sends SIGWINCH to the child's foreground process group by itself.
void copy_window_size(int terminal, int pty_master);

// Puts a terminal in raw mode (keys, ^C included, go to the child unchanged) and restores the
// saved mode when destroyed.
class RawTerminal {
 public:
  static Result<RawTerminal> enter(int fd);
  RawTerminal(RawTerminal&& other) noexcept;
  RawTerminal& operator=(RawTerminal&&) = delete;
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal();

 private:
  RawTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  int fd_ = -1;
  termios saved_{};
};

}  // namespace openshell::runtime
