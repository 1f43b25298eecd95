// Private to the proxy: terminating TLS inside a CONNECT tunnel (spec §3.4). The origin is
// verified first, then the client is served a leaf for the CONNECT host, then the requests
// between them are inspected as plaintext.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <string>

#include "context.hpp"
#include "tunnel_http.hpp"

namespace openshell::proxy::detail {

// `hello`: the client's bytes read so far (its ClientHello, at least in part).
asio::awaitable<void> intercept_tls_tunnel(ProxyContext& context, const ConnectionInfo& info,
                                           const TunnelTarget& target,
                                           asio::ip::tcp::socket& client, std::string hello,
                                           asio::ip::tcp::socket& upstream);

}  // namespace openshell::proxy::detail
