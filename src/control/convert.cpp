// Protobuf ⇄ value types for the control protocol, and the error mapping both ends share.
#include "convert.hpp"

#include <algorithm>

namespace openshell::control::detail {

void set_version(pb::ProtocolVersion* out, uint32_t major, uint32_t minor) {
  out->set_major(major);
  out->set_minor(minor);
}

pb::PolicyFormat to_pb(proxy::PolicyFormat format) {
  switch (format) {
    case proxy::PolicyFormat::kYaml:
      return pb::POLICY_FORMAT_YAML;
    case proxy::PolicyFormat::kJson:
      return pb::POLICY_FORMAT_JSON;
    case proxy::PolicyFormat::kAuto:
      break;
  }
  return pb::POLICY_FORMAT_UNSPECIFIED;
}

proxy::PolicyFormat from_pb(pb::PolicyFormat format) {
  if (format == pb::POLICY_FORMAT_YAML) return proxy::PolicyFormat::kYaml;
  if (format == pb::POLICY_FORMAT_JSON) return proxy::PolicyFormat::kJson;
  return proxy::PolicyFormat::kAuto;
}

void to_pb(const policy::Diagnostic& in, pb::Diagnostic* out) {
  out->set_path(in.path);
  out->set_line(static_cast<uint32_t>(std::max(0, in.location.line)));
  out->set_column(static_cast<uint32_t>(std::max(0, in.location.column)));
  out->set_message(in.message);
}

policy::Diagnostic from_pb(const pb::Diagnostic& in, policy::Severity severity) {
  policy::Diagnostic out;
  out.severity = severity;
  out.path = in.path();
  out.location.line = static_cast<int>(in.line());
  out.location.column = static_cast<int>(in.column());
  out.message = in.message();
  return out;
}

void to_pb(const proxy::PushOutcome& in, pb::PushPolicyResponse* out) {
  out->set_accepted(in.accepted);
  out->set_generation(in.generation);
  for (const auto& d : in.errors)
    to_pb(d, out->add_errors());
  for (const auto& d : in.warnings)
    to_pb(d, out->add_warnings());
}

proxy::PushOutcome from_pb(const pb::PushPolicyResponse& in) {
  proxy::PushOutcome out;
  out.accepted = in.accepted();
  out.generation = in.generation();
  for (const auto& d : in.errors())
    out.errors.push_back(from_pb(d, policy::Severity::kError));
  for (const auto& d : in.warnings())
    out.warnings.push_back(from_pb(d, policy::Severity::kWarning));
  return out;
}

void to_pb(const proxy::PolicySnapshot& in, pb::GetPolicyResponse* out) {
  out->set_generation(in.generation);
  out->set_document(in.document);
  out->set_format(to_pb(in.format));
  out->set_digest(in.digest);
}

proxy::PolicySnapshot from_pb(const pb::GetPolicyResponse& in) {
  return {in.generation(), in.document(), from_pb(in.format()), in.digest()};
}

void to_pb(const proxy::InferenceRoute& in, pb::Route* out) {
  out->set_name(in.name);
  out->set_endpoint(in.endpoint);
  out->set_model(in.model);
  for (const auto& p : in.protocols)
    out->add_protocols(p);
  out->set_provider_type(in.provider_type);
  out->set_api_key(in.api_key);
}

proxy::InferenceRoute from_pb(const pb::Route& in) {
  proxy::InferenceRoute out;
  out.name = in.name();
  out.endpoint = in.endpoint();
  out.model = in.model();
  out.protocols.assign(in.protocols().begin(), in.protocols().end());
  out.provider_type = in.provider_type();
  out.api_key = in.api_key();
  return out;
}

void to_pb(const proxy::ProxyStatus& in, pb::StatusResponse* out) {
  out->set_generation(in.generation);
  out->set_policy_digest(in.policy_digest);
  for (const auto& l : in.listeners)
    out->add_listeners(l);
  out->set_active_connections(in.active_connections);
  auto* counters = out->mutable_counters();
  counters->set_connections_total(in.counters.connections_total);
  counters->set_denials_total(in.counters.denials_total);
  counters->set_policy_pushes(in.counters.policy_pushes);
  counters->set_policy_push_failures(in.counters.policy_push_failures);
  out->set_uptime_ms(in.uptime_ms);
  out->set_version(in.version);
  for (const auto& k : in.credential_keys)
    out->add_credential_keys(k);
  for (const auto& r : in.route_names)
    out->add_route_names(r);
  set_version(out->mutable_protocol_version(), proxy::kControlProtocolMajor,
              proxy::kControlProtocolMinor);
}

proxy::ProxyStatus from_pb(const pb::StatusResponse& in) {
  proxy::ProxyStatus out;
  out.generation = in.generation();
  out.policy_digest = in.policy_digest();
  out.listeners.assign(in.listeners().begin(), in.listeners().end());
  out.active_connections = in.active_connections();
  out.counters.connections_total = in.counters().connections_total();
  out.counters.denials_total = in.counters().denials_total();
  out.counters.policy_pushes = in.counters().policy_pushes();
  out.counters.policy_push_failures = in.counters().policy_push_failures();
  out.uptime_ms = in.uptime_ms();
  out.version = in.version();
  out.credential_keys.assign(in.credential_keys().begin(), in.credential_keys().end());
  out.route_names.assign(in.route_names().begin(), in.route_names().end());
  return out;
}

void to_pb(const proxy::DenialUpdate& in, pb::DenialUpdate* out) {
  out->set_dropped(in.dropped);
  if (in.kind == proxy::DenialUpdate::Kind::kEvent) {
    auto* e = out->mutable_event();
    e->set_host(in.event.host);
    e->set_port(in.event.port);
    e->set_binary(in.event.binary);
    e->set_reason(in.event.reason);
    e->set_stage(in.event.stage);
    e->set_time_ms(in.time_ms);
    return;
  }
  auto* s = out->mutable_summary();
  s->set_host(in.summary.host);
  s->set_port(in.summary.port);
  s->set_binary(in.summary.binary);
  s->set_stage(in.summary.stage);
  s->set_count(in.summary.count);
  s->set_first_seen_ms(in.summary.first_seen_ms);
  s->set_last_seen_ms(in.summary.last_seen_ms);
  for (const auto& r : in.summary.sample_reasons)
    s->add_sample_reasons(r);
}

proxy::DenialUpdate from_pb(const pb::DenialUpdate& in) {
  proxy::DenialUpdate out;
  out.dropped = in.dropped();
  if (in.has_summary()) {
    const auto& s = in.summary();
    out.kind = proxy::DenialUpdate::Kind::kSummary;
    out.summary.host = s.host();
    out.summary.port = static_cast<uint16_t>(s.port());
    out.summary.binary = s.binary();
    out.summary.stage = s.stage();
    out.summary.count = s.count();
    out.summary.first_seen_ms = s.first_seen_ms();
    out.summary.last_seen_ms = s.last_seen_ms();
    out.summary.sample_reasons.assign(s.sample_reasons().begin(), s.sample_reasons().end());
    return out;
  }
  const auto& e = in.event();
  out.kind = proxy::DenialUpdate::Kind::kEvent;
  out.event.host = e.host();
  out.event.port = static_cast<uint16_t>(e.port());
  out.event.binary = e.binary();
  out.event.reason = e.reason();
  out.event.stage = e.stage();
  out.time_ms = e.time_ms();
  return out;
}

grpc::Status to_status(const Error& error) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (error.code) {
    case Errc::kInvalidArgument:
    case Errc::kParse:
    case Errc::kPolicy:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case Errc::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case Errc::kPermission:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    // Not "unavailable" on the wire: gRPC's UNAVAILABLE means "cannot reach the server", which the
    // client reports as a connection failure.
    case Errc::kUnavailable:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case Errc::kLimit:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case Errc::kTimeout:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case Errc::kIo:
    case Errc::kSyscall:
    case Errc::kInternal:
      break;
  }
  return {code, error.message};
}

Error from_status(const grpc::Status& status, const std::string& endpoint) {
  const std::string& message = status.error_message();
  // An if-chain, not a switch: grpc::StatusCode has values no client should ever see here.
  const grpc::StatusCode code = status.error_code();
  if (code == grpc::StatusCode::INVALID_ARGUMENT)
    return make_error(Errc::kInvalidArgument, message);
  if (code == grpc::StatusCode::NOT_FOUND) return make_error(Errc::kNotFound, message);
  if (code == grpc::StatusCode::PERMISSION_DENIED || code == grpc::StatusCode::UNAUTHENTICATED) {
    return make_error(Errc::kPermission, message);
  }
  if (code == grpc::StatusCode::FAILED_PRECONDITION) return make_error(Errc::kUnavailable, message);
  if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) return make_error(Errc::kLimit, message);
  if (code == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return make_error(Errc::kTimeout, "control endpoint " + endpoint + " did not answer in time");
  }
  if (code == grpc::StatusCode::UNAVAILABLE) {
    return make_error(Errc::kIo, "cannot connect to control endpoint " + endpoint + ": " + message);
  }
  return make_error(Errc::kInternal, "control endpoint " + endpoint + ": " + message);
}

}  // namespace openshell::control::detail
