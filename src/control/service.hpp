// Private to the control layer: the gRPC service that adapts any ProxyControl.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "control.grpc.pb.h"
#include "openshell/proxy/control.hpp"

namespace openshell::control::detail {

class ControlService final : public ::openshell::control::v1::ProxyControl::Service {
 public:
  // `token` empty: no authorization check (unix socket: file permissions authenticate).
  ControlService(proxy::ProxyControl& control, std::string token)
      : control_(control), token_(std::move(token)) {}

  // Ends open WatchDenials streams at their next poll; server shutdown waits for handlers.
  void stop() { stopping_.store(true); }

  grpc::Status PushPolicy(grpc::ServerContext* context, const v1::PushPolicyRequest* request,
                          v1::PushPolicyResponse* response) override;
  grpc::Status GetPolicy(grpc::ServerContext* context, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse* response) override;
  grpc::Status SetCredentials(grpc::ServerContext* context,
                              const v1::SetCredentialsRequest* request,
                              v1::SetCredentialsResponse* response) override;
  grpc::Status SetRoutes(grpc::ServerContext* context, const v1::SetRoutesRequest* request,
                         v1::SetRoutesResponse* response) override;
  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override;
  grpc::Status WatchDenials(grpc::ServerContext* context, const v1::WatchDenialsRequest* request,
                            grpc::ServerWriter<v1::DenialUpdate>* writer) override;
  grpc::Status GetCa(grpc::ServerContext* context, const v1::GetCaRequest* request,
                     v1::GetCaResponse* response) override;

 private:
  // Token then protocol version: the checks every handler starts with.
  grpc::Status admit(const grpc::ServerContext& context, const v1::ProtocolVersion& version) const;

  proxy::ProxyControl& control_;
  const std::string token_;
  std::atomic<bool> stopping_{false};
};

}  // namespace openshell::control::detail
