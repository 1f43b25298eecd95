// Window-bounded copies between SSH channels and descriptors.
#include "ssh_channel_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace openshell::runtime::ssh {

Flow fd_to_channel(int fd, ssh_channel channel, bool extended) {
  const size_t window = std::min<size_t>(ssh_channel_window_size(channel), kRelayChunk);
  if (window == 0) return Flow::kIdle;
  char buffer[kRelayChunk];
  const ssize_t got = ::read(fd, buffer, window);
  if (got < 0) return errno == EAGAIN || errno == EINTR ? Flow::kIdle : Flow::kEnd;
  if (got == 0) return Flow::kEnd;
  const uint32_t size = static_cast<uint32_t>(got);
  const int sent = extended ? ssh_channel_write_stderr(channel, buffer, size)
                            : ssh_channel_write(channel, buffer, size);
  return sent == SSH_ERROR ? Flow::kEnd : Flow::kMoved;
}

Flow drain_fd_to_channel(int fd, ssh_channel channel, bool extended) {
  Flow last = Flow::kIdle;
  for (int reads = 0; reads < kReadsPerRound; ++reads) {
    const Flow flow = fd_to_channel(fd, channel, extended);
    if (flow != Flow::kMoved) return flow;
    last = flow;
  }
  return last;
}

bool send_within_window(ssh_channel channel, std::string& bytes, bool extended) {
  const size_t size = std::min<size_t>(ssh_channel_window_size(channel), bytes.size());
  if (size == 0) return true;
  const uint32_t count = static_cast<uint32_t>(size);
  const int sent = extended ? ssh_channel_write_stderr(channel, bytes.data(), count)
                            : ssh_channel_write(channel, bytes.data(), count);
  if (sent == SSH_ERROR) return false;
  bytes.erase(0, size);
  return true;
}

void Inbound::fill(ssh_channel channel) {
  if (!pending_.empty() || eof_) return;
  char buffer[kRelayChunk];
  const int got = ssh_channel_read_nonblocking(channel, buffer, sizeof buffer, 0);
  if (got > 0) pending_.assign(buffer, static_cast<size_t>(got));
  // SSH_EOF once the client's input ended and was read: `cat | tar xf -` needs the EOF.
  if (got == SSH_EOF || got == SSH_ERROR || (got == 0 && ssh_channel_is_eof(channel) != 0)) {
    eof_ = true;
  }
}

Flow Inbound::to_fd(ssh_channel channel, int fd) {
  fill(channel);
  if (pending_.empty()) return eof_ ? Flow::kEnd : Flow::kIdle;
  const ssize_t put = ::write(fd, pending_.data(), pending_.size());
  if (put < 0) {
    if (errno == EAGAIN || errno == EINTR) return Flow::kIdle;
    pending_.clear();  // the reader is gone: drop what it will never read
    return Flow::kEnd;
  }
  pending_.erase(0, static_cast<size_t>(put));
  return Flow::kMoved;
}

Flow Inbound::drain_to_fd(ssh_channel channel, int fd) {
  for (int reads = 0; reads < kReadsPerRound; ++reads) {
    const Flow flow = to_fd(channel, fd);
    if (flow != Flow::kMoved) return flow;
  }
  return Flow::kMoved;
}

void watch(Watches& watches, int fd, short events) {
  if (fd < 0 || events == 0) return;
  for (pollfd& existing : watches) {
    if (existing.fd == fd) {
      existing.events = static_cast<short>(existing.events | events);
      return;
    }
  }
  watches.push_back({fd, events, 0});
}

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

}  // namespace openshell::runtime::ssh
