// Moving bytes between an SSH channel and a file descriptor without blocking: what every channel
// of the server (sessions, attachments, forwards) is made of. Output never exceeds the client's
// window, so ssh_channel_write does not wait; input is read from the channel only once the last
// read was delivered, so the client's window (and our memory) stays bounded.
#pragma once

#include <libssh/libssh.h>
#include <poll.h>

#include <string>
#include <string_view>
#include <vector>

#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime::ssh {

// One read from a descriptor or the channel; below the channel's initial window.
inline constexpr size_t kRelayChunk = size_t{32} * 1024;
// Reads per direction per loop round: a bulk copy moves this many chunks between polls, and
// one busy channel cannot starve the others for longer.
inline constexpr int kReadsPerRound = 16;

enum class Flow { kMoved, kIdle, kEnd };

// Reads what `fd` has (at most the channel's window) and sends it, on stderr's extended stream
// when `extended`. kEnd: EOF or an error on `fd` (the caller closes it).
Flow fd_to_channel(int fd, ssh_channel channel, bool extended);

// fd_to_channel() until `fd` has nothing more, the window is shut or kReadsPerRound reads
// were made (the fd then stays readable, and the loop comes back at once). kEnd: `fd` ended.
Flow drain_fd_to_channel(int fd, ssh_channel channel, bool extended);

// Sends as much of `bytes` as the window allows; what it sent is erased from it. False when the
// channel failed.
bool send_within_window(ssh_channel channel, std::string& bytes, bool extended = false);

// Bytes from the client on their way to a descriptor.
class Inbound {
 public:
  // Reads from the channel when nothing is pending; notes the client's EOF.
  void fill(ssh_channel channel);
  // fill(), then writes what is pending to `fd`. Returns kEnd once the client's EOF is
  // delivered or `fd` refused (closed reader): the caller closes `fd`.
  Flow to_fd(ssh_channel channel, int fd);
  // to_fd() until `fd` is full or nothing is buffered, for at most kReadsPerRound reads: libssh
  // holds what arrived without waking the loop, so one read per round would leave the rest
  // (and the client, whose window grows only as we read) waiting for the next packet.
  // kMoved: the bound was hit with data maybe still buffered: pump again without sleeping.
  Flow drain_to_fd(ssh_channel channel, int fd);

  std::string& pending() { return pending_; }
  const std::string& pending() const { return pending_; }
  bool eof() const { return eof_; }

 private:
  std::string pending_;
  bool eof_ = false;
};

// The fds a channel wants the loop to wake for.
using Watches = std::vector<pollfd>;
void watch(Watches& watches, int fd, short events);

void set_nonblocking(int fd);

}  // namespace openshell::runtime::ssh
