// The gRPC face of ProxyControl: authenticate, check the protocol version, convert, delegate.
#include "service.hpp"

#include "convert.hpp"
#include "openshell/control/endpoint.hpp"

namespace openshell::control::detail {

namespace {

constexpr std::string_view kBearer = "Bearer ";

}  // namespace

grpc::Status ControlService::admit(const grpc::ServerContext& context,
                                   const v1::ProtocolVersion& version) const {
  if (!token_.empty()) {
    const auto& metadata = context.client_metadata();
    const auto found = metadata.find("authorization");
    if (found == metadata.end()) {
      return {grpc::StatusCode::UNAUTHENTICATED,
              "missing authorization: this control endpoint requires a bearer token"};
    }
    const std::string_view value(found->second.data(), found->second.size());
    const std::string_view presented =
        value.starts_with(kBearer) ? value.substr(kBearer.size()) : std::string_view{};
    if (!constant_time_equal(presented, token_)) {
      return {grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token"};
    }
  }
  if (version.major() != proxy::kControlProtocolMajor) {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            "unsupported control protocol version " + std::to_string(version.major()) + "." +
                std::to_string(version.minor()) + ": this server speaks " +
                std::to_string(proxy::kControlProtocolMajor) + ".x"};
  }
  return grpc::Status::OK;
}

grpc::Status ControlService::PushPolicy(grpc::ServerContext* context,
                                        const v1::PushPolicyRequest* request,
                                        v1::PushPolicyResponse* response) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  proxy::PolicyPush push{request->document(), from_pb(request->format()), request->source_name()};
  auto outcome = control_.push_policy(push);
  if (!outcome.ok()) return to_status(outcome.error());
  to_pb(*outcome, response);
  return grpc::Status::OK;
}

grpc::Status ControlService::GetPolicy(grpc::ServerContext* context,
                                       const v1::GetPolicyRequest* request,
                                       v1::GetPolicyResponse* response) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  auto snapshot = control_.get_policy();
  if (!snapshot.ok()) return to_status(snapshot.error());
  to_pb(*snapshot, response);
  return grpc::Status::OK;
}

grpc::Status ControlService::SetCredentials(grpc::ServerContext* context,
                                            const v1::SetCredentialsRequest* request,
                                            v1::SetCredentialsResponse* response) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  proxy::CredentialMap credentials;
  for (const auto& credential : request->credentials()) {
    proxy::CredentialSpec spec;
    spec.value = credential.value();
    for (const auto& binding : credential.bindings()) {
      if (binding.port() > 65535) {
        return {grpc::StatusCode::INVALID_ARGUMENT,
                "credential " + credential.key() + ": binding port " +
                    std::to_string(binding.port()) + " is not 0..65535"};
      }
      spec.bindings.push_back(
          {binding.host(), static_cast<uint16_t>(binding.port()), binding.path()});
    }
    if (!credentials.emplace(credential.key(), std::move(spec)).second) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "credential key '" + credential.key() + "' given twice"};
    }
  }
  auto placeholders = control_.set_bound_credentials(credentials);
  for (auto& [key, spec] : credentials)
    proxy::wipe(spec.value);
  if (!placeholders.ok()) return to_status(placeholders.error());
  for (const auto& [key, placeholder] : *placeholders)
    (*response->mutable_placeholders())[key] = placeholder;
  return grpc::Status::OK;
}

grpc::Status ControlService::SetRoutes(grpc::ServerContext* context,
                                       const v1::SetRoutesRequest* request,
                                       v1::SetRoutesResponse* response) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  std::vector<proxy::InferenceRoute> routes;
  for (const auto& route : request->routes())
    routes.push_back(from_pb(route));
  auto count = control_.set_routes(routes);
  if (!count.ok()) return to_status(count.error());
  response->set_route_count(static_cast<uint32_t>(*count));
  return grpc::Status::OK;
}

grpc::Status ControlService::Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                                    v1::StatusResponse* response) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  auto status = control_.status();
  if (!status.ok()) return to_status(status.error());
  to_pb(*status, response);
  return grpc::Status::OK;
}

grpc::Status ControlService::WatchDenials(grpc::ServerContext* context,
                                          const v1::WatchDenialsRequest* request,
                                          grpc::ServerWriter<v1::DenialUpdate>* writer) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  proxy::WatchOptions options;
  options.events = request->events();
  options.summaries = request->summaries();
  options.should_stop = [this, context] { return stopping_.load() || context->IsCancelled(); };
  // Headers go out now, so a client sees the stream open before the first denial.
  writer->SendInitialMetadata();
  auto watched = control_.watch_denials(options, [&](const proxy::DenialUpdate& update) {
    if (stopping_.load()) return false;
    v1::DenialUpdate message;
    to_pb(update, &message);
    return writer->Write(message);
  });
  if (!watched.ok()) return to_status(watched.error());
  return grpc::Status::OK;
}

grpc::Status ControlService::GetCa(grpc::ServerContext* context, const v1::GetCaRequest* request,
                                   v1::GetCaResponse* response) {
  if (auto denied = admit(*context, request->protocol_version()); !denied.ok()) return denied;
  auto pem = control_.get_ca();
  if (!pem.ok()) return to_status(pem.error());
  response->set_certificate_pem(*pem);
  return grpc::Status::OK;
}

}  // namespace openshell::control::detail
