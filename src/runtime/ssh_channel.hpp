// One open channel of an SSH connection, as the connection's loop sees it: after every poll
// round it is pumped (moves what can move without blocking), and between rounds it names the
// descriptors the loop should wake for.
#pragma once

#include "ssh_channel_io.hpp"

namespace openshell::runtime::ssh {

class ChannelHandler {
 public:
  virtual ~ChannelHandler() = default;
  // False once the channel is finished (closed, or its peer gone): the loop frees it.
  virtual bool pump() = 0;
  virtual void watch(Watches& watches) const = 0;
  // Waiting for a session's exit notice (the loop then watches the spawner's channel).
  virtual bool awaits_exit() const { return false; }
  // Input may still wait inside libssh, which no descriptor announces: pump again at once.
  virtual bool backlog() const { return false; }
};

}  // namespace openshell::runtime::ssh
