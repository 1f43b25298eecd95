// Wiring the SSH server into `openshell sandbox` (issue 9).
#include "ssh_setup.hpp"

#include <string>
#include <utility>

namespace openshell::sandbox {

std::unique_ptr<runtime::SshServer> start_ssh_server(
    const SandboxOptions& options, Isolation& isolation, const runtime::Sandbox& sandbox,
    const runtime::SandboxSpec& main_spec, SshSessionServices services, core::Logger& log) {
  if (!isolation.sessions) {
    log.error("ssh: no session spawner (prepare_isolation was not asked for one)");
    return nullptr;
  }
  runtime::SshServerOptions ssh_options;
  ssh_options.listen = options.ssh;
  ssh_options.authorized_keys_path = options.ssh_authorized_keys;
  ssh_options.host_key_path = options.ssh_host_key;
  if (options.ssh_idle_timeout) ssh_options.idle_timeout = *options.ssh_idle_timeout;
  ssh_options.credentials = std::move(services.credentials);
  ssh_options.main_session = std::move(services.main_session);
  ssh_options.on_bypass = std::move(services.on_bypass);
  // Like the main process's monitor: connects to the proxy feed the fast identity lookup.
  ssh_options.bypass_monitor.proxy_port = runtime::kSandboxProxyPort;
  ssh_options.bypass_monitor.connect_owners = std::move(services.connect_owners);
  ssh_options.sandbox_pidfd = sandbox.pidfd();
  ssh_options.session_template = main_spec;
  auto started =
      runtime::SshServer::start(std::move(*isolation.sessions), std::move(ssh_options), log);
  isolation.sessions.reset();
  if (!started.ok()) {
    log.error("{}", started.error().message);
    return nullptr;
  }
  return std::move(*started);
}

}  // namespace openshell::sandbox
