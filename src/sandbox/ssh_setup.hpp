// `openshell sandbox --ssh`: the runtime's SSH server started on the running sandbox.
#pragma once

#include <memory>

#include "openshell/core/log.hpp"
#include "openshell/runtime/bypass_monitor.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/ssh_server.hpp"
#include "openshell/sandbox/launch.hpp"
#include "openshell/sandbox/sandbox.hpp"

namespace openshell::sandbox {

// What the rest of `openshell sandbox` lends the SSH server's sessions.
struct SshSessionServices {
  std::shared_ptr<const runtime::CredentialProvider> credentials;  // placeholders
  std::shared_ptr<runtime::MainSession> main_session;  // null: the main process has no PTY
  runtime::BypassMonitor::Report on_bypass;            // a session's attempt to leave
  std::shared_ptr<runtime::ConnectOwners> connect_owners;
};

// Starts the SSH server with the isolation's session spawner (taken), running sessions in
// `sandbox` with the main command's spec as their template and `services`. nullptr: failed, and
// logged.
std::unique_ptr<runtime::SshServer> start_ssh_server(
    const SandboxOptions& options, Isolation& isolation, const runtime::Sandbox& sandbox,
    const runtime::SandboxSpec& main_spec, SshSessionServices services, core::Logger& log);

}  // namespace openshell::sandbox
