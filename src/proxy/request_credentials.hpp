// Private to the proxy: credential injection at the points where requests are relayed (inside
// tunnels and in the forward proxy). Wraps the sans-I/O rewriters with the request's credential
// snapshot, the refusal responses of spec §9 and the events that record them.
#pragma once

#include <asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "context.hpp"
#include "io.hpp"
#include "openshell/proxy/credentials.hpp"

namespace openshell::proxy::detail {

// One request's credential work, decided from the snapshot current when it arrived.
struct RequestCredentials {
  std::shared_ptr<const CredentialSet> set;  // never null
  std::string host;
  uint16_t port = 0;
};

RequestCredentials request_credentials(const ProxyContext& context, std::string_view host,
                                       uint16_t port);

// Substitutes placeholders in `target` (origin form) and `head`'s headers. On failure: the
// refusal to send (500 credential_unavailable / 403 credential_endpoint_mismatch), after a
// denial event naming the key (never the secret).
std::optional<std::string> inject_head_credentials(ProxyContext& context,
                                                   const ConnectionInfo& info,
                                                   const RequestCredentials& credentials,
                                                   std::string& target, RequestHead& head);

// Whether the request body is to be buffered and rewritten: the endpoint opted in, the request
// has a body, and its Content-Type is one of JSON, form or text.
bool wants_body_rewrite(const policy::ConnectDecision& decision, const RequestHead& head);

// Whether a body that is not rewritten must be scanned for placeholder markers as it streams
// (spec §4.5): whenever credentials are configured.
bool guards_streamed_body(const RequestCredentials& credentials, const RequestHead& head);

// The refusal (500 credential_unavailable) for a streamed body that carried a marker, after its
// denial event.
std::string body_marker_refusal(ProxyContext& context, const ConnectionInfo& info,
                                const RequestCredentials& credentials, std::string_view method,
                                std::string_view redacted_path);

struct BufferedBody {
  std::optional<std::string> body;  // the rewritten body, framed by Content-Length
  std::string refusal;              // when body is empty: the response to send (may be empty:
                                    // the client went away)
};

// Reads the request body (≤ kMaxCredentialBodyBytes on the wire), answers `Expect:
// 100-continue` itself, substitutes placeholders and reframes `head` with Content-Length.
asio::awaitable<BufferedBody> buffer_credential_body(ProxyContext& context,
                                                     const ConnectionInfo& info,
                                                     const RequestCredentials& credentials,
                                                     std::string_view path, StreamReader& client,
                                                     RequestHead& head);

}  // namespace openshell::proxy::detail
