// The embedded SSH server (issue 9, runtime-spec §6): libssh on a unix socket or TCP, public-key
// authentication against an authorized_keys file, and `exec` channels whose commands run as
// sessions inside the running sandbox (Spawner::spawn_session) with the main process's isolation.
//
// Threads: one accepts, one per connection. Sessions come from a spawner of the server's own
// (forked, like every spawner, before the first thread) so the supervisor's spawner channel stays
// single-threaded; a session dies with the sandbox (pid namespace) and with that spawner.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/runtime/bypass_monitor.hpp"
#include "openshell/runtime/credential_provider.hpp"
#include "openshell/runtime/main_session.hpp"
#include "openshell/runtime/spawner.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

// Connections served at once; more are closed right after accept (runtime-spec §6: limits).
inline constexpr size_t kSshMaxConnections = 16;
// Key exchange plus authentication must finish within this: a silent client holds a thread.
inline constexpr std::chrono::seconds kSshAuthTimeout{30};
// A refused key costs the client this long before the answer (slows down guessing).
inline constexpr std::chrono::milliseconds kSshAuthFailureDelay{1'000};
// Authentication attempts per connection before it is closed.
inline constexpr int kSshMaxAuthAttempts = 6;
// A connection with no channel open for this long is closed (0 in the options: never).
inline constexpr std::chrono::seconds kSshDefaultIdleTimeout{30 * 60};
// Failed connections (ended without authenticating after a refused key) one peer (a uid on the
// unix socket, an address over TCP) may have within kSshFailureWindow; past that its connections
// are closed at accept until the window moves on.
inline constexpr int kSshMaxFailuresPerPeer = 10;
inline constexpr std::chrono::seconds kSshFailureWindow{60};

// SshServerOptions::listen, parsed.
struct SshListenAddress {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;   // kUnix
  std::string host;   // kTcp: an IPv4 or IPv6 address, without brackets
  uint16_t port = 0;  // kTcp; 0: one the kernel picks
};

// "unix:PATH" or "tcp:HOST:PORT" (HOST an IP address, IPv6 in brackets); errors are meant for
// the user of `--ssh`.
Result<SshListenAddress> parse_ssh_listen(std::string_view text);

struct SshServerOptions {
  // "unix:PATH" (socket 0600, its parent directory created 0700) or "tcp:HOST:PORT".
  std::string listen;
  std::string authorized_keys_path;  // OpenSSH format, one key a line (options are not supported)
  std::string host_key_path;         // an OpenSSH private key; empty: Ed25519 made in memory
  std::chrono::seconds idle_timeout = kSshDefaultIdleTimeout;
  // The sandbox to run sessions in (the init's pidfd, borrowed: it must outlive the server) and
  // the spec of its main process, whose program, argv and tty each session replaces.
  int sandbox_pidfd = -1;
  SandboxSpec session_template;
  // Adds to each session's environment (placeholders in `openshell sandbox`); may be null.
  std::shared_ptr<const CredentialProvider> credentials;
  // The main process's terminal for the `openshell-main` subsystem; null: the main process has
  // no PTY and the subsystem is refused.
  std::shared_ptr<MainSession> main_session;
  // Each session of a watched sandbox gets a bypass monitor of its own (its filter is not the
  // init's): attempts go to `on_bypass` (may be null: answered, not reported).
  BypassMonitor::Report on_bypass;
  BypassMonitorOptions bypass_monitor;
};

class SshServer {
 public:
  // Loads or generates the host key, binds the socket and starts accepting. `spawner` serves only
  // the server's sessions; `log` must outlive the server.
  static Result<std::unique_ptr<SshServer>> start(Spawner spawner, SshServerOptions options,
                                                  const core::Logger& log);
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;
  // Stops accepting, ends every connection (their sessions are SIGKILLed), removes the socket.
  ~SshServer();

  // "SHA256:…" of the host key, as `ssh` shows it.
  const std::string& host_key_fingerprint() const;
  // Where it listens: "unix:PATH", "tcp:127.0.0.1:PORT", "tcp:[::1]:PORT" (the real port).
  const std::string& address() const;

  struct State;

 private:
  explicit SshServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace openshell::runtime
