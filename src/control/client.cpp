// GrpcProxyControl: each ProxyControl call as one gRPC call, with the token as plain
// `authorization` metadata (gRPC refuses call credentials on insecure channels).
#include "openshell/control/client.hpp"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "control.grpc.pb.h"
#include "convert.hpp"

namespace openshell::control {

namespace pb = ::openshell::control::v1;
using detail::from_pb;
using detail::from_status;
using detail::to_pb;

struct GrpcProxyControl::State {
  Endpoint endpoint;
  std::string token;
  std::unique_ptr<pb::ProxyControl::Stub> stub;
  uint32_t major = proxy::kControlProtocolMajor;
  uint32_t minor = proxy::kControlProtocolMinor;

  void prepare(grpc::ClientContext& context, bool unary) const {
    if (unary) context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  }
  template <class Request>
  Request request() const {
    Request out;
    detail::set_version(out.mutable_protocol_version(), major, minor);
    return out;
  }
  Error failure(const grpc::Status& status) const {
    return from_status(status, endpoint.to_string());
  }
};

GrpcProxyControl::GrpcProxyControl(Endpoint endpoint, std::string token,
                                   std::optional<ClientTls> tls)
    : state_(std::make_unique<State>()) {
  state_->endpoint = std::move(endpoint);
  state_->token = std::move(token);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = tls->ca_pem;
    options.pem_cert_chain = tls->cert_pem;
    options.pem_private_key = tls->key_pem;
    credentials = grpc::SslCredentials(options);
  }
  auto channel = grpc::CreateChannel(state_->endpoint.grpc_target(), credentials);
  state_->stub = pb::ProxyControl::NewStub(channel);
}

GrpcProxyControl::~GrpcProxyControl() = default;

void GrpcProxyControl::set_protocol_version(uint32_t major, uint32_t minor) {
  state_->major = major;
  state_->minor = minor;
}

Result<proxy::PushOutcome> GrpcProxyControl::push_policy(const proxy::PolicyPush& push) {
  grpc::ClientContext context;
  state_->prepare(context, true);
  auto request = state_->request<pb::PushPolicyRequest>();
  request.set_document(push.document);
  request.set_format(to_pb(push.format));
  request.set_source_name(push.source_name);
  pb::PushPolicyResponse response;
  const grpc::Status status = state_->stub->PushPolicy(&context, request, &response);
  if (!status.ok()) return state_->failure(status);
  return from_pb(response);
}

Result<proxy::PolicySnapshot> GrpcProxyControl::get_policy() {
  grpc::ClientContext context;
  state_->prepare(context, true);
  pb::GetPolicyResponse response;
  const grpc::Status status =
      state_->stub->GetPolicy(&context, state_->request<pb::GetPolicyRequest>(), &response);
  if (!status.ok()) return state_->failure(status);
  return from_pb(response);
}

Result<std::map<std::string, std::string>> GrpcProxyControl::set_bound_credentials(
    const proxy::CredentialMap& credentials) {
  grpc::ClientContext context;
  state_->prepare(context, true);
  auto request = state_->request<pb::SetCredentialsRequest>();
  for (const auto& [key, spec] : credentials) {
    auto* credential = request.add_credentials();
    credential->set_key(key);
    credential->set_value(spec.value);
    for (const proxy::CredentialBinding& binding : spec.bindings) {
      auto* out = credential->add_bindings();
      out->set_host(binding.host);
      out->set_port(binding.port);
      out->set_path(binding.path);
    }
  }
  pb::SetCredentialsResponse response;
  const grpc::Status status = state_->stub->SetCredentials(&context, request, &response);
  if (!status.ok()) return state_->failure(status);
  return std::map<std::string, std::string>(response.placeholders().begin(),
                                            response.placeholders().end());
}

Result<size_t> GrpcProxyControl::set_routes(const std::vector<proxy::InferenceRoute>& routes) {
  grpc::ClientContext context;
  state_->prepare(context, true);
  auto request = state_->request<pb::SetRoutesRequest>();
  for (const auto& route : routes)
    to_pb(route, request.add_routes());
  pb::SetRoutesResponse response;
  const grpc::Status status = state_->stub->SetRoutes(&context, request, &response);
  if (!status.ok()) return state_->failure(status);
  return static_cast<size_t>(response.route_count());
}

Result<proxy::ProxyStatus> GrpcProxyControl::status() {
  grpc::ClientContext context;
  state_->prepare(context, true);
  pb::StatusResponse response;
  const grpc::Status status =
      state_->stub->Status(&context, state_->request<pb::StatusRequest>(), &response);
  if (!status.ok()) return state_->failure(status);
  return from_pb(response);
}

Result<void> GrpcProxyControl::watch_denials(const proxy::WatchOptions& options,
                                             const proxy::DenialCallback& callback) {
  grpc::ClientContext context;
  state_->prepare(context, false);
  auto request = state_->request<pb::WatchDenialsRequest>();
  request.set_events(options.events);
  request.set_summaries(options.summaries);
  auto reader = state_->stub->WatchDenials(&context, request);
  // Wait for the server's headers: a refused or unreachable stream fails here, not silently.
  reader->WaitForInitialMetadata();
  pb::DenialUpdate message;
  bool cancelled = false;
  while (reader->Read(&message)) {
    if (!callback(from_pb(message))) {
      context.TryCancel();
      cancelled = true;
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (cancelled || status.ok()) return {};
  return state_->failure(status);
}

Result<std::string> GrpcProxyControl::get_ca() {
  grpc::ClientContext context;
  state_->prepare(context, true);
  pb::GetCaResponse response;
  const grpc::Status status =
      state_->stub->GetCa(&context, state_->request<pb::GetCaRequest>(), &response);
  if (!status.ok()) return state_->failure(status);
  return response.certificate_pem();
}

}  // namespace openshell::control
