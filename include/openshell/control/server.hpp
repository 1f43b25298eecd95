// The gRPC control server: serves any ProxyControl on a unix socket (file permissions are the
// authentication) or on TCP with a bearer token. Its threads exist only while it runs.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "openshell/control/endpoint.hpp"
#include "openshell/core/result.hpp"
#include "openshell/proxy/control.hpp"

namespace openshell::control {

// Mutual TLS: the server's certificate chain and key, and the CA its clients' certificates must
// chain to (PEM text, not paths).
struct ServerTls {
  std::string cert_pem;
  std::string key_pem;
  std::string client_ca_pem;
};

struct ServerOptions {
  Endpoint endpoint;
  // TCP needs a token or mTLS (no unauthenticated TCP control, ever); on unix the token is an
  // optional extra check.
  std::string token;
  std::optional<ServerTls> tls;
};

class ControlServer {
 public:
  // Binds and starts serving `control`, which must outlive the server. Unix: refuses a path held
  // by a live server, removes a stale socket, chmods the socket 0600 and creates a missing parent
  // directory 0700.
  static Result<std::unique_ptr<ControlServer>> start(ServerOptions options,
                                                      proxy::ProxyControl& control);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // The endpoint as bound (a tcp port 0 resolved to the kernel's choice).
  const Endpoint& endpoint() const;
  // Ends open streams, refuses new calls, waits for handlers, removes the unix socket.
  void shutdown();

 private:
  struct State;
  explicit ControlServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace openshell::control
