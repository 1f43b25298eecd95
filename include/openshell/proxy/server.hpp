// The egress proxy server: listeners, worker threads, connection limit, denial summaries and
// graceful shutdown. Policy comes from a PolicyStore the caller owns (and may push into).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/proxy/credentials.hpp"
#include "openshell/proxy/denials.hpp"
#include "openshell/proxy/options.hpp"
#include "openshell/proxy/policy_store.hpp"

namespace openshell::proxy {

namespace tls {
class Interception;
}
class InferenceRouteTable;

class ProxyServer {
 public:
  // `interception` (optional, must outlive the server): the CA and upstream TLS settings; without
  // it, tunnels that need TLS termination are refused with 503.
  ProxyServer(ProxyOptions options, PolicyStore& store, std::shared_ptr<core::Logger> logger,
              tls::Interception* interception = nullptr);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds every --listen address; the error names the address that failed. A unix:PATH listener
  // replaces a stale socket file (nothing accepts on it) but refuses a live socket or a file
  // that is not a socket; its socket file gets options.unix_listen_mode and is removed at
  // shutdown.
  Result<void> bind();
  // Accepts on an already listening TCP socket as well (sandbox mode: the listener the runtime
  // created inside the child's network namespace). Takes ownership of `fd`, even on error.
  Result<void> adopt_listener(int fd);
  // "ip:port" of each listener as bound (port 0 resolved to the kernel's choice), or
  // "unix:PATH", in --listen order.
  std::vector<std::string> bound_addresses() const;
  // Starts the worker threads and accept loops.
  void start();
  // Stops accepting, lets open connections finish for up to `grace`, then cuts the rest and
  // joins the threads. Idempotent.
  void shutdown(std::chrono::milliseconds grace);

  size_t active_connections() const;
  // Client connections accepted since start (including those refused by the cap).
  uint64_t connections_total() const;
  DenialAggregator& denials();
  // The routes `inference.local` serves (empty until a controller sets them).
  InferenceRouteTable& inference_routes();
  // Secrets for placeholder substitution (spec §4); LocalProxyControl::set_credentials fills it.
  CredentialStore& credentials();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Parses a --listen value: "IP:PORT", "[IPv6]:PORT", an address alone (port 3128), or
// "unix:/ABSOLUTE/PATH" (a unix stream socket, where a PROXY v2 identity header needs no HMAC:
// the socket file's permissions decide who may connect).
struct ListenAddress {
  std::string ip;
  uint16_t port = 0;
  std::string unix_path;  // non-empty: a unix socket; ip and port are unused
};
Result<ListenAddress> parse_listen_address(std::string_view text);

}  // namespace openshell::proxy
