// A running proxy (one worker, loopback, no sinks) with a ProxyControl over it: direct, or through
// a real ControlServer over a unix socket or TCP with a token. Shared by the control tests.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "openshell/control/client.hpp"
#include "openshell/control/server.hpp"
#include "openshell/proxy/control.hpp"
#include "openshell/proxy/policy_store.hpp"
#include "openshell/proxy/server.hpp"

namespace openshell::control::test {

enum class Transport { kLocal, kUnix, kTcp };

inline const char* transport_name(Transport t) {
  return t == Transport::kLocal ? "local" : t == Transport::kUnix ? "grpc-unix" : "grpc-tcp-token";
}

inline constexpr const char* kToken = "s3cret-token";

struct Harness {
  std::string dir;
  proxy::PolicyStore store;
  std::unique_ptr<proxy::ProxyServer> server;
  std::unique_ptr<proxy::LocalProxyControl> local;
  std::unique_ptr<ControlServer> control_server;
  std::unique_ptr<GrpcProxyControl> client;

  explicit Harness(Transport transport, proxy::LocalControlOptions local_options = {}) {
    char pattern[] = "/tmp/openshell-control-test-XXXXXX";
    dir = ::mkdtemp(pattern);
    proxy::ProxyOptions options;
    options.listen = {"127.0.0.1:0"};
    options.threads = 1;
    options.resolver_threads = 1;
    server = std::make_unique<proxy::ProxyServer>(
        options, store, std::make_shared<core::Logger>(core::Level::kError));
    if (!server->bind().ok()) throw std::runtime_error("bind failed");
    server->start();
    local =
        std::make_unique<proxy::LocalProxyControl>(store, server.get(), std::move(local_options));
    if (transport == Transport::kLocal) return;
    ServerOptions server_options;
    if (transport == Transport::kUnix) {
      server_options.endpoint = *parse_endpoint("unix:" + dir + "/sock/control.sock");
    } else {
      server_options.endpoint = *parse_endpoint("tcp:127.0.0.1:0");
      server_options.token = kToken;
    }
    auto started = ControlServer::start(server_options, *local);
    if (!started.ok()) throw std::runtime_error(started.error().message);
    control_server = std::move(*started);
    client = std::make_unique<GrpcProxyControl>(control_server->endpoint(),
                                                transport == Transport::kTcp ? kToken : "");
  }

  ~Harness() {
    local->close();
    client.reset();
    if (control_server) control_server->shutdown();
    server->shutdown(std::chrono::milliseconds(0));
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  proxy::ProxyControl& control() {
    return client ? static_cast<proxy::ProxyControl&>(*client) : *local;
  }
};

}  // namespace openshell::control::test
