// Private to the proxy: what every connection handler shares (read-mostly; counters atomic).
#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/correlation.hpp"
#include "openshell/core/log.hpp"
#include "openshell/proxy/credentials.hpp"
#include "openshell/proxy/denials.hpp"
#include "openshell/proxy/dialer.hpp"
#include "openshell/proxy/http_head.hpp"
#include "openshell/proxy/options.hpp"
#include "openshell/proxy/policy_store.hpp"
#include "openshell/proxy/relay.hpp"
#include "openshell/proxy/resolver.hpp"
#include "openshell/proxy/ssrf.hpp"

namespace openshell::proxy::tls {
class Interception;
}

namespace openshell::proxy {
class InferenceRouteTable;
}

namespace openshell::proxy::detail {

struct ProxyContext {
  const ProxyOptions& options;
  PolicyStore& store;
  Resolver& resolver;
  DenialAggregator& denials;
  RelayShutdown& tunnels;
  core::Logger& log;
  SsrfOptions ssrf;
  tls::Interception* tls = nullptr;          // null: no CA, tunnels that need termination get 503
  InferenceRouteTable* inference = nullptr;  // routes for inference.local; null: none (503)
  CredentialStore* credentials = nullptr;    // null: no credentials (placeholders fail closed)
  std::atomic<bool> draining{false};
  std::atomic<size_t> active{0};
};

// The process behind a client connection, as an identity source reported it (a PROXY v2 header
// from `openshell run`, or the sandbox's own lookup).
struct PeerIdentity {
  int pid = 0;
  std::string exe;
  std::string exe_sha256;              // hex
  std::vector<std::string> ancestors;  // nearest first
  std::vector<std::string> cmdline_paths;
};

// One client connection's identity in events.
struct ConnectionInfo {
  core::CorrelationId cid;
  uint16_t peer_port = 0;
  std::string peer_ip;
  std::optional<PeerIdentity> identity;  // none: `binaries` are not evaluated
  // Why the identity source could not name the process; non-empty: every decision denies.
  std::string identity_failure;
};

// Where a connection to host:port ended up, or why it did not.
struct Upstream {
  enum class Failure { kNone, kSsrf, kResolve, kRefused, kTimeout };
  std::optional<asio::ip::tcp::socket> socket;
  asio::ip::tcp::endpoint endpoint;
  Failure failure = Failure::kNone;
  SsrfDenial ssrf;     // kSsrf
  std::string detail;  // person-readable, for events
};

// Destination plan → resolution off the I/O threads → SSRF check of every address → dial the
// validated addresses in order (spec §2.8 steps 8–13).
asio::awaitable<Upstream> open_upstream(ProxyContext& context, const std::string& host,
                                        uint16_t port, const policy::ConnectDecision& decision);

class StreamReader;

// Reads one request head (spec §8 limits: the proxy's own requests, or kTunnelRequestHeadLimit
// inside a tunnel). A malformed head is answered (431 or 400) and gives nullopt, as do a closed
// connection and a timeout. `between_requests`: waiting on a keep-alive connection, where the
// idle timeout applies until the first byte arrives.
asio::awaitable<std::optional<RequestHead>> read_request_head(
    ProxyContext& context, StreamReader& reader, bool between_requests,
    size_t head_limit = kProxyRequestHeadLimit);

// Request handlers; each owns the client socket until it returns.
asio::awaitable<void> handle_connect(ProxyContext& context, const ConnectionInfo& info,
                                     asio::ip::tcp::socket& client, const RequestHead& head,
                                     std::string leftover);
asio::awaitable<void> handle_forward(ProxyContext& context, const ConnectionInfo& info,
                                     asio::ip::tcp::socket& client, RequestHead head,
                                     std::string leftover);

// The listener a connection came in on. On a unix listener the socket file's permissions decide
// who may connect (DESIGN.md "Network path inside a sandbox"), so a PROXY v2 identity header
// there needs no HMAC and is optional; the accepted unix socket is carried in a tcp::socket,
// since the handlers only read, write, wait on and shut it down (nothing asks it for an address).
enum class Transport : uint8_t { kTcp, kUnix };

// `peer`: the client's address (kTcp); unused for kUnix.
asio::awaitable<void> serve_connection(ProxyContext& context, asio::ip::tcp::socket client,
                                       asio::ip::tcp::endpoint peer,
                                       Transport transport = Transport::kTcp);

// The engine's input for a connection: host, port and, when known, the process identity.
class EngineInput {
 public:
  EngineInput(const ConnectionInfo& info, std::string_view host, uint16_t port);
  EngineInput(const EngineInput&) = delete;
  EngineInput& operator=(const EngineInput&) = delete;
  const policy::ConnectInput& get() const { return input_; }

 private:
  policy::ProcessIdentity identity_;
  policy::ConnectInput input_;
};

// The connection-level decision under `policy` for the connection's process identity, with
// --require-identity applied: a connection without one is denied what the policy would admit.
policy::ConnectDecision decide_connection(const ProxyContext& context, const ConnectionInfo& info,
                                          const policy::CompiledPolicy& policy,
                                          std::string_view host, uint16_t port);

// Records a denial for aggregation and logs the event.
void report_denial(ProxyContext& context, const ConnectionInfo& info, core::Event event,
                   DenialEvent denial);

}  // namespace openshell::proxy::detail
