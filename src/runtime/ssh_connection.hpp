// One SSH connection of the embedded server: key exchange, public-key authentication, one
// session channel and its `exec` request, relayed over pipes to a sandbox session.
#pragma once

#include <libssh/libssh.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "openshell/core/log.hpp"
#include "ssh_launcher.hpp"

namespace openshell::runtime::ssh {

struct ConnectionContext {
  const std::string& authorized_keys_path;
  SessionLauncher& launcher;
  const core::Logger& log;
  const std::atomic<bool>& stop;  // raised when the server stops: the connection ends promptly
};

// Serves `session` (accepted, key exchange not yet done) until the client leaves or `stop` is
// raised, then frees it (which closes its socket).
void serve_connection(ssh_session session, const ConnectionContext& context, uint64_t id);

}  // namespace openshell::runtime::ssh
