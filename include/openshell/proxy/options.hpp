// Operator settings of the proxy. Every limit and timeout is named here with the reason for its
// default; flags of `openshell proxy` map onto these fields one to one.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace openshell::proxy {

class IdentitySource;

// Spec §8 has no connection cap (a documented gap); 10,000 keeps one proxy within default fd
// limits and memory (≤ 40 KiB per idle tunnel ⇒ ≈ 400 MiB worst case).
inline constexpr size_t kDefaultMaxConnections = 10000;
// A client that has not finished its request head by then is a slowloris, not a slow network.
inline constexpr std::chrono::seconds kDefaultHeadTimeout{10};
// Upstream connect per address; each resolved address gets this long before the next is tried.
inline constexpr std::chrono::seconds kDefaultUpstreamConnectTimeout{10};
// An idle tunnel or keep-alive connection is closed after this long without a byte either way.
inline constexpr std::chrono::seconds kDefaultIdleTimeout{300};
// SIGTERM/SIGINT: how long open connections may finish before they are cut.
inline constexpr std::chrono::seconds kDefaultGrace{10};
// Denials are summarised per (host, port, binary) over this window (spec §7.2).
inline constexpr std::chrono::seconds kDenialWindow{10};

// unix:PATH listeners: only the proxy's own user may connect (and so assert identities).
inline constexpr uint32_t kDefaultUnixListenMode = 0600;

struct ProxyOptions {
  std::vector<std::string> listen{"127.0.0.1:3128"};
  size_t threads = 0;  // 0: one per core
  size_t resolver_threads = 4;
  size_t max_connections = kDefaultMaxConnections;
  std::chrono::milliseconds head_timeout = kDefaultHeadTimeout;
  std::chrono::milliseconds connect_timeout = kDefaultUpstreamConnectTimeout;
  std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout;
  std::chrono::milliseconds grace = kDefaultGrace;
  std::chrono::milliseconds denial_window = kDenialWindow;
  bool allow_loopback_upstream = false;
  // Without an identity source `binaries` are not evaluated; with this set, deny instead.
  bool require_identity = false;
  // Terminate TLS in every tunnel not marked `tls: skip`, not only where rules or credentials
  // need it (sandbox mode, where the child trusts our CA; --tls-intercept=all).
  bool intercept_all = false;
  // Split topology (`openshell run --network proxy:tcp://...`): every TCP connection starts with
  // a PROXY v2 header whose HMAC is keyed by this secret, and carries the caller's identity.
  // Empty: no header is expected on TCP, and a connection that sends one is refused. On a unix
  // listener a header is optional and needs no HMAC; one that carries an HMAC is checked with
  // this key when it is set.
  std::string identity_key;
  // Permissions of each unix:PATH listener's socket file. Connecting needs write permission, and
  // whoever can connect can claim any process identity: owner-only unless the operator widens it.
  uint32_t unix_listen_mode = kDefaultUnixListenMode;
  // Sandbox mode: every connection's process is looked up here before its request is read; a
  // connection that cannot be identified is refused. Null: no in-process identity source.
  std::shared_ptr<IdentitySource> identity_source;
};

}  // namespace openshell::proxy
