// Credential injection where requests are relayed: snapshot, rewrite, refuse on failure (spec
// §4.3–4.5). Events name the key that failed and the redacted target, never a secret.
#include "request_credentials.hpp"

#include "openshell/core/events.hpp"
#include "openshell/proxy/chunked.hpp"
#include "openshell/proxy/credential_body.hpp"
#include "openshell/proxy/credential_rewrite.hpp"
#include "openshell/proxy/http_response.hpp"

namespace openshell::proxy::detail {

namespace {

std::string refusal_for(CredentialFailure failure) {
  return failure == CredentialFailure::kEndpointMismatch ? credential_endpoint_mismatch_response()
                                                         : credential_unavailable_response();
}

void report_failure(ProxyContext& context, const ConnectionInfo& info, std::string_view host,
                    uint16_t port, std::string_view method, std::string_view redacted_path,
                    const CredentialOutcome& outcome) {
  const bool mismatch = outcome.failure == CredentialFailure::kEndpointMismatch;
  std::string reason = mismatch ? "credential_endpoint_mismatch" : "credential_unavailable";
  if (!outcome.key.empty()) reason += ": key " + outcome.key;
  core::Event event =
      core::Event::http_activity(core::HttpActivity::kOther)
          .denied()
          .with_message("CREDENTIAL refused " + std::string(method) + " " + std::string(host) +
                        ":" + std::to_string(port) + std::string(redacted_path))
          .with_reason(reason)
          .with_rule(mismatch ? "credential_binding" : "credential_resolution", "credentials")
          .with_dst(host, port)
          .with_cid(info.cid);
  report_denial(context, info, std::move(event),
                DenialEvent{std::string(host), port, "-", reason, "credentials"});
}

// Collects decoded chunk data while the framer validates the chunked coding.
class Collect final : public ChunkDataSink {
 public:
  explicit Collect(std::string& into) : into_(into) {}
  void on_chunk_data(std::span<const char> data) override {
    into_.append(data.data(), data.size());
  }

 private:
  std::string& into_;
};

}  // namespace

RequestCredentials request_credentials(const ProxyContext& context, std::string_view host,
                                       uint16_t port) {
  RequestCredentials out;
  out.set =
      context.credentials != nullptr ? context.credentials->current() : *CredentialSet::build({});
  out.host = std::string(host);
  out.port = port;
  return out;
}

std::optional<std::string> inject_head_credentials(ProxyContext& context,
                                                   const ConnectionInfo& info,
                                                   const RequestCredentials& credentials,
                                                   std::string& target, RequestHead& head) {
  // The common case costs one scan: nothing that looks like a placeholder, nothing to do.
  bool marked = contains_credential_marker(target);
  for (const HeaderField& field : head.headers)
    marked = marked || contains_credential_marker(field.name) ||
             contains_credential_marker(field.value) ||
             (ascii_iequals(field.name, "authorization") && field.value.size() > 6 &&
              ascii_iequals(std::string_view(field.value).substr(0, 6), "basic "));
  if (!marked) return std::nullopt;
  const CredentialScope scope{credentials.set.get(), credentials.host, credentials.port, {}};
  HeadRewrite rewrite = rewrite_request_credentials(target, head.headers, scope);
  if (!rewrite.outcome.ok()) {
    report_failure(context, info, credentials.host, credentials.port, head.method,
                   rewrite.redacted.substr(0, rewrite.redacted.find('?')), rewrite.outcome);
    return refusal_for(rewrite.outcome.failure);
  }
  target = std::move(rewrite.target);
  return std::nullopt;
}

bool guards_streamed_body(const RequestCredentials& credentials, const RequestHead& head) {
  return credentials.set != nullptr && !credentials.set->empty() && head.has_body();
}

std::string body_marker_refusal(ProxyContext& context, const ConnectionInfo& info,
                                const RequestCredentials& credentials, std::string_view method,
                                std::string_view redacted_path) {
  CredentialOutcome outcome;
  outcome.failure = CredentialFailure::kUnavailable;
  report_failure(context, info, credentials.host, credentials.port, method, redacted_path, outcome);
  return credential_unavailable_response();
}

bool wants_body_rewrite(const policy::ConnectDecision& decision, const RequestHead& head) {
  if (!decision.has_l7_route || decision.primary == nullptr) return false;
  if (!decision.primary->source().request_body_credential_rewrite || !head.has_body()) {
    return false;
  }
  const HeaderField* type = head.find("content-type");
  return type != nullptr && credential_body_kind(type->value) != CredentialBodyKind::kOther;
}

asio::awaitable<BufferedBody> buffer_credential_body(ProxyContext& context,
                                                     const ConnectionInfo& info,
                                                     const RequestCredentials& credentials,
                                                     std::string_view path, StreamReader& client,
                                                     RequestHead& head) {
  BufferedBody result;
  const Clock::duration idle = context.options.idle_timeout;
  if (!head.chunked && head.content_length.value_or(0) > kMaxCredentialBodyBytes) {
    result.refusal = credential_body_too_large_response();
    co_return result;
  }
  // The client holds its body until told to send it; the upstream never sees the Expect.
  bool expected = false;
  std::erase_if(head.headers, [&](const HeaderField& field) {
    if (!ascii_iequals(field.name, "expect")) return false;
    expected = expected || ascii_iequals(field.value, "100-continue");
    return true;
  });
  if (expected) {
    if (co_await write_all(client.stream(), "HTTP/1.1 100 Continue\r\n\r\n", idle))
      co_return result;
  }
  std::string body;
  ChunkedFramer framer;
  Collect collect(body);
  FixedLengthBody fixed(head.content_length.value_or(0));
  uint64_t wire = 0;
  for (;;) {
    const std::string_view pending = client.pending();
    if (!pending.empty()) {
      const BodyProgress progress =
          head.chunked ? framer.feed(pending, &collect) : fixed.feed(pending);
      if (progress.status == BodyStatus::kError) {
        wipe(body);
        result.refusal = bad_request_response();
        co_return result;
      }
      wire += progress.consumed;
      if (!head.chunked) body.append(pending.substr(0, progress.consumed));
      client.consume(progress.consumed);
      if (progress.status == BodyStatus::kComplete) break;
    }
    if (wire > kMaxCredentialBodyBytes) {
      wipe(body);
      result.refusal = credential_body_too_large_response();
      co_return result;
    }
    const ReadOutcome read = co_await client.fill(Clock::now() + idle);
    if (read.error) {
      wipe(body);
      co_return result;  // the client went away mid-body
    }
  }
  if (wire > kMaxCredentialBodyBytes) {
    wipe(body);
    result.refusal = credential_body_too_large_response();
    co_return result;
  }
  const HeaderField* type = head.find("content-type");
  const CredentialScope scope{credentials.set.get(), credentials.host, credentials.port, path};
  const CredentialOutcome outcome = rewrite_credential_body(
      credential_body_kind(type != nullptr ? type->value : ""), body, scope);
  if (!outcome.ok()) {
    report_failure(context, info, credentials.host, credentials.port, head.method, path, outcome);
    result.refusal = refusal_for(outcome.failure);
    co_return result;
  }
  // Reframed with a Content-Length: the substituted body has its own size.
  std::erase_if(head.headers, [](const HeaderField& field) {
    return ascii_iequals(field.name, "content-length") ||
           ascii_iequals(field.name, "transfer-encoding");
  });
  head.headers.push_back({"Content-Length", std::to_string(body.size())});
  head.chunked = false;
  head.content_length = body.size();
  result.body = std::move(body);
  co_return result;
}

}  // namespace openshell::proxy::detail
