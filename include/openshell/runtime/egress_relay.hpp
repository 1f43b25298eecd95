// `openshell run --network proxy:tcp://HOST:PORT | proxy:unix:PATH`: relays each connection the
// sandbox makes to its in-namespace listener to a remote proxy, prefixed with a PROXY protocol v2
// header that names the calling process (DESIGN.md "Network path inside a sandbox").
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/runtime/connect_owners.hpp"
#include "openshell/runtime/socket_diag.hpp"

namespace openshell::runtime {

// Identification reads procfs and may hash a large binary on first sight (~1 s for 500 MB); the
// client waits meanwhile, so the bound is generous but finite.
inline constexpr std::chrono::milliseconds kEgressIdentifyTimeout{std::chrono::seconds(10)};
// A proxy that does not answer a TCP handshake in this time is down or unreachable.
inline constexpr std::chrono::milliseconds kEgressConnectTimeout{std::chrono::seconds(10)};
// As the proxy's tunnels (proxy relay.hpp): long-lived quiet connections must survive.
inline constexpr std::chrono::milliseconds kEgressIdleTimeout{std::chrono::hours(1)};
// Per direction and connection: one TLS record per read; a slow reader stalls its writer
// through TCP flow control instead of growing a buffer.
inline constexpr std::size_t kEgressBufferSize = std::size_t{16} * 1024;
// sizeof(sockaddr_un::sun_path) minus the terminating NUL.
inline constexpr std::size_t kMaxUnixPathSize = 107;

// Where `--network proxy:...` sends connections.
struct EgressTarget {
  enum class Kind : uint8_t { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;   // kTcp: DNS name or IP literal (an IPv6 literal without brackets)
  uint16_t port = 0;  // kTcp
  std::string path;   // kUnix: absolute
  // The flag's own spelling, for logs: "proxy:tcp://[::1]:3128", "proxy:unix:/run/p.sock".
  std::string text() const;
};

// Accepts exactly "proxy:tcp://HOST:PORT" (HOST a name, an IPv4 literal or a bracketed IPv6
// literal; PORT 1-65535) and "proxy:unix:/ABSOLUTE/PATH". Errors name the expected format.
Result<EgressTarget> parse_network_proxy(std::string_view text);

struct EgressRelayOptions {
  EgressTarget target;
  // Shared secret for the HMAC TLV. Empty: headers carry no HMAC, which a unix-socket proxy
  // can trust through file permissions; over TCP the relay warns (whether to allow it at all is
  // the caller's decision).
  std::vector<uint8_t> identity_key;
  pid_t netns_pid = 0;  // a process in the sandbox's network namespace (its entrypoint)
  pid_t root_pid = 0;   // the sandbox's root process: identity never looks beyond it
  // Faster identity lookups (see IdentityResolver); either may be null.
  std::shared_ptr<SocketDiag> socket_diag;
  std::shared_ptr<const ConnectOwners> connect_owners;
  std::chrono::milliseconds identify_timeout = kEgressIdentifyTimeout;
  std::chrono::milliseconds connect_timeout = kEgressConnectTimeout;
  std::chrono::milliseconds idle_timeout = kEgressIdleTimeout;
};

// The relay: one thread running its own io_context, plus a small pool for identification (procfs
// scans and hashing must not stall the relayed connections). Every connection is identified
// before anything is sent: a connection whose owner cannot be established is closed and logged
// (fail closed; the proxy would deny it anyway).
class EgressRelay {
 public:
  // Takes ownership of `listen_fd`, a listening TCP socket (the sandbox's 127.0.0.1:3128), and
  // closes it on failure too. `log` must outlive the relay.
  static Result<std::unique_ptr<EgressRelay>> start(int listen_fd, EgressRelayOptions options,
                                                    core::Logger& log);

  ~EgressRelay();  // stop()
  EgressRelay(const EgressRelay&) = delete;
  EgressRelay& operator=(const EgressRelay&) = delete;

  // Stops accepting, closes every connection and joins the threads. Idempotent; call it from
  // the owning thread, not from a log sink.
  void stop();

  // Connections accepted, and those closed because identification failed or timed out.
  uint64_t accepted() const;
  uint64_t refused() const;

 private:
  struct Impl;
  explicit EgressRelay(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace openshell::runtime
