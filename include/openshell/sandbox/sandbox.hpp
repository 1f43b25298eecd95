// `openshell sandbox`: the proxy and the runtime composed in one process (DESIGN.md, first
// table). The sandbox layer only wires existing pieces: the runtime's spawner and supervisor,
// the proxy server adopting the in-namespace listener, the runtime's identity lookup as the
// proxy's identity source, and LocalProxyControl (optionally served over gRPC).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "openshell/core/log.hpp"

namespace openshell::sandbox {

struct SandboxOptions {
  std::string policy_file;  // empty: restrictive filesystem default, network deny-all
  std::string control;      // unix:PATH; empty: no control endpoint
  // Isolation (the meaning of `openshell run`'s flags of the same name).
  std::string workdir;
  std::string user;
  std::string group;
  std::chrono::milliseconds timeout{0};
  bool tty = false;
  bool no_tty = false;
  std::vector<std::string> env;
  // --credential KEY=ENV_VAR | KEY=@FILE: secrets for the proxy; the child sees placeholders.
  std::vector<std::string> credentials;
  // Proxy (the meaning of `openshell proxy`'s flags of the same name).
  bool allow_loopback_upstream = false;
  std::vector<std::string> upstream_ca_paths;
  std::string inference_routes_file;  // routes served at inference.local; empty: none
  // SSH (issue 9): unix:PATH or tcp:HOST:PORT, and the keys it accepts; empty: no SSH server.
  std::string ssh;
  std::string ssh_authorized_keys;
  std::string ssh_host_key;  // an OpenSSH private key file; empty: Ed25519 made in memory
  std::optional<std::chrono::seconds> ssh_idle_timeout;  // 0: never; unset: the runtime's default
  std::vector<std::string> command;
};

// Runs the command in a sandbox whose only way out is the in-process proxy. Returns the exit
// code `sandbox` reports: the child's, 128+N for signal N, 124 after the timeout, 125 when the
// sandbox could not be set up, 126/127 when the program could not be run.
int run(const SandboxOptions& options, const std::shared_ptr<core::Logger>& logger);

}  // namespace openshell::sandbox
