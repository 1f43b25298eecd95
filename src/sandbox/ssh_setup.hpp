// `openshell sandbox --ssh`: the runtime's SSH server started on the running sandbox.
#pragma once

#include <memory>

#include "openshell/core/log.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/ssh_server.hpp"
#include "openshell/sandbox/launch.hpp"
#include "openshell/sandbox/sandbox.hpp"

namespace openshell::sandbox {

// Starts the SSH server with the isolation's session spawner (taken), running sessions in
// `sandbox` with the main command's spec as their template. `credentials` adds to each session's
// environment and `main_session` serves `openshell-main`; either may be null. nullptr: failed,
// and logged.
std::unique_ptr<runtime::SshServer> start_ssh_server(
    const SandboxOptions& options, Isolation& isolation, const runtime::Sandbox& sandbox,
    const runtime::SandboxSpec& main_spec,
    std::shared_ptr<const runtime::CredentialProvider> credentials,
    std::shared_ptr<runtime::MainSession> main_session, core::Logger& log);

}  // namespace openshell::sandbox
