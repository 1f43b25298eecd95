// Private to the control layer: the value types of proxy/control.hpp ⇄ their protobuf messages,
// and Errc ⇄ grpc::Status. Both ends use the same functions, so a round trip is the identity.
#pragma once

#include <grpcpp/support/status.h>

#include "control.pb.h"
#include "openshell/core/result.hpp"
#include "openshell/proxy/control.hpp"

namespace openshell::control::detail {

namespace pb = ::openshell::control::v1;

void set_version(pb::ProtocolVersion* out, uint32_t major, uint32_t minor);

pb::PolicyFormat to_pb(proxy::PolicyFormat format);
proxy::PolicyFormat from_pb(pb::PolicyFormat format);

void to_pb(const policy::Diagnostic& in, pb::Diagnostic* out);
policy::Diagnostic from_pb(const pb::Diagnostic& in, policy::Severity severity);

void to_pb(const proxy::PushOutcome& in, pb::PushPolicyResponse* out);
proxy::PushOutcome from_pb(const pb::PushPolicyResponse& in);

void to_pb(const proxy::PolicySnapshot& in, pb::GetPolicyResponse* out);
proxy::PolicySnapshot from_pb(const pb::GetPolicyResponse& in);

void to_pb(const proxy::InferenceRoute& in, pb::Route* out);
proxy::InferenceRoute from_pb(const pb::Route& in);

void to_pb(const proxy::ProxyStatus& in, pb::StatusResponse* out);
proxy::ProxyStatus from_pb(const pb::StatusResponse& in);

void to_pb(const proxy::DenialUpdate& in, pb::DenialUpdate* out);
proxy::DenialUpdate from_pb(const pb::DenialUpdate& in);

grpc::Status to_status(const Error& error);
// `endpoint` names where the call went, for transport failures.
Error from_status(const grpc::Status& status, const std::string& endpoint);

}  // namespace openshell::control::detail
