// One SSH connection of the embedded server: key exchange, public-key authentication, then any
// number of channels (session channels running exec/shell/sftp/openshell-main, direct-tcpip
// forwards to the sandbox's loopback), served by one thread on one event loop.
#pragma once

#include <libssh/libssh.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "openshell/core/log.hpp"
#include "openshell/runtime/ssh_server.hpp"
#include "ssh_launcher.hpp"
#include "ssh_throttle.hpp"

namespace openshell::runtime::ssh {

struct ConnectionContext {
  const SshServerOptions& options;
  SessionLauncher& launcher;
  AuthThrottle& throttle;
  const core::Logger& log;
  const std::atomic<bool>& stop;  // raised when the server stops: the connection ends promptly
};

// Serves `session` (accepted, key exchange not yet done) from `peer` (the throttle's key: "uid
// 1000", "127.0.0.1") until the client leaves, it idles out or `stop` is raised, then frees it
// (which closes its socket).
void serve_connection(ssh_session session, const ConnectionContext& context,
                      const std::string& peer, uint64_t id);

}  // namespace openshell::runtime::ssh
