// GrpcProxyControl: a ProxyControl whose proxy runs elsewhere (`ctl`, or a sandbox whose proxy is
// in another pod). Transport failures come back as Errc::kIo naming the endpoint (`ctl` exit 3).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "openshell/control/endpoint.hpp"
#include "openshell/proxy/control.hpp"

namespace openshell::control {

// A unary call that takes longer than this is a hung proxy, not a slow one.
inline constexpr std::chrono::seconds kCallTimeout{10};

// Mutual TLS towards a proxy started with --control-tls-*: the CA that signed the proxy's
// certificate, and this client's certificate chain and key (PEM text).
struct ClientTls {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

class GrpcProxyControl final : public proxy::ProxyControl {
 public:
  // `token` empty: no authorization metadata. Nothing connects until the first call.
  GrpcProxyControl(Endpoint endpoint, std::string token,
                   std::optional<ClientTls> tls = std::nullopt);
  ~GrpcProxyControl() override;
  GrpcProxyControl(const GrpcProxyControl&) = delete;
  GrpcProxyControl& operator=(const GrpcProxyControl&) = delete;

  // Tests speak other protocol versions with this.
  void set_protocol_version(uint32_t major, uint32_t minor);

  Result<proxy::PushOutcome> push_policy(const proxy::PolicyPush& push) override;
  Result<proxy::PolicySnapshot> get_policy() override;
  Result<std::map<std::string, std::string>> set_bound_credentials(
      const proxy::CredentialMap& credentials) override;
  Result<size_t> set_routes(const std::vector<proxy::InferenceRoute>& routes) override;
  Result<proxy::ProxyStatus> status() override;
  Result<void> watch_denials(const proxy::WatchOptions& options,
                             const proxy::DenialCallback& callback) override;
  Result<std::string> get_ca() override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace openshell::control
