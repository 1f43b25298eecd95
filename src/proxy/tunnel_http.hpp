// Private to the proxy: HTTP/1.1 inside an opened tunnel (spec §2.5, §3.4), plaintext or
// terminated TLS. Every request is parsed, checked against the CONNECT authority, decided under
// the policy generation current when it arrives, and forwarded over the tunnel's one upstream
// connection; its response is framed so the next request on the keep-alive tunnel is found.
#pragma once

#include <asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "context.hpp"
#include "io.hpp"

namespace openshell::proxy::detail {

struct TunnelTarget {
  std::string host;  // the CONNECT host, lowercased
  uint16_t port = 0;
  bool tls = false;  // requests arrive inside TLS: a Host header without a port means 443
  std::string dst_ip;
  // What admitted the tunnel; requests are decided again once the policy is replaced.
  std::shared_ptr<const policy::CompiledPolicy> policy;
  policy::ConnectDecision decision;
};

// Serves requests until either side closes, a request is refused, or the tunnel upgrades
// (101), after which bytes are relayed raw. `client` holds bytes the client already sent.
asio::awaitable<void> serve_http_tunnel(ProxyContext& context, const ConnectionInfo& info,
                                        const TunnelTarget& target, StreamReader& client,
                                        ByteStream& upstream);

}  // namespace openshell::proxy::detail
