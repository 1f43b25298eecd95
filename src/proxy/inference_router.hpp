// Private to the proxy: the virtual host `inference.local` (spec §5, issue 8). Requests shaped
// like the OpenAI and Anthropic APIs are sent to the first configured route that speaks their
// protocol, with the route's key and model; everything else is refused. Both entry points
// bypass the network policy, identity checks and the SSRF guard: the host is virtual, and the
// backends are the operator's (see openshell-proxy(1) "INFERENCE ROUTES").
#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <string>
#include <string_view>

#include "context.hpp"
#include "io.hpp"

namespace openshell::proxy::detail {

// Serves one request whose head was read from `client`; `target` is its origin-form target.
// Returns whether the client connection may carry another request.
asio::awaitable<bool> serve_inference_request(ProxyContext& context, const ConnectionInfo& info,
                                              StreamReader& client, const RequestHead& head,
                                              std::string_view target, bool tls);

// CONNECT inference.local:PORT: 200, then TLS terminated with a leaf for inference.local (or
// plaintext HTTP, when that is what the client speaks), then requests until either side closes.
asio::awaitable<void> handle_inference_connect(ProxyContext& context, const ConnectionInfo& info,
                                               asio::ip::tcp::socket& client, std::string leftover);

}  // namespace openshell::proxy::detail
