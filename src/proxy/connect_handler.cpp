// CONNECT: decide, check the destination, dial, answer 200 and relay (spec §2.8).
#include <asio/this_coro.hpp>

#include "context.hpp"
#include "inference_router.hpp"
#include "io.hpp"
#include "openshell/core/events.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/inference_api.hpp"
#include "openshell/proxy/tunnel_sniff.hpp"
#include "tls_tunnel.hpp"
#include "tunnel_http.hpp"

namespace openshell::proxy::detail {

namespace {

namespace events = core::events;

// Spec §8: the peek gives up after 100 ms on endpoints where the server may speak first.
constexpr std::chrono::milliseconds kSniffTimeout{100};

// Writes a refusal and logs why; the connection ends with it.
asio::awaitable<void> refuse(ProxyContext& context, asio::ip::tcp::socket& client,
                             std::string_view response) {
  (void)co_await write_all(client, response, context.options.head_timeout);
}

// Whether this tunnel's bytes are looked at (spec §2.8 step 15, issue #5): never for `tls: skip`;
// always for endpoints with L7 rules or credentials; for the rest only with --tls-intercept=all
// (a standalone proxy's clients may not trust our CA).
bool should_inspect(const ProxyContext& context, const policy::ConnectDecision& decision,
                    std::string_view host, uint16_t port) {
  if (decision.primary != nullptr && decision.primary->tls_skip()) return false;
  return decision.has_l7_route || decision.needs_credential_inspection ||
         context.options.intercept_all ||
         (context.credentials != nullptr && context.credentials->current()->may_apply(host, port));
}

// Spec §4.6: a `tls: skip` tunnel to an endpoint a credential is bound to would carry the
// placeholder (or a secret the workload found elsewhere) uninspected; refused unless opted in.
bool uninspected_credentials(const ProxyContext& context, const policy::ConnectDecision& decision,
                             std::string_view host, uint16_t port) {
  if (decision.primary == nullptr || !decision.primary->tls_skip()) return false;
  if (decision.primary->source().allow_uninspected_credentials) return false;
  return context.credentials != nullptr &&
         context.credentials->current()->binds_endpoint(host, port);
}

asio::awaitable<void> relay_tunnel(ProxyContext& context, const ConnectionInfo& info,
                                   const std::string& host, uint16_t port,
                                   const std::string& address, asio::ip::tcp::socket& client,
                                   asio::ip::tcp::socket& upstream, std::string_view initial) {
  RelayOptions options;
  options.idle_timeout = context.options.idle_timeout;
  options.shutdown = &context.tunnels;
  const RelayStats stats =
      co_await relay(client, upstream, options,
                     std::span<const std::byte>(reinterpret_cast<const std::byte*>(initial.data()),
                                                initial.size()));
  context.log.emit(
      events::network_close(
          host, port, stats.upstream_to_client, stats.client_to_upstream,
          std::chrono::duration_cast<std::chrono::milliseconds>(stats.duration).count())
          .with_cid(info.cid)
          .with_dst_ip(address)
          .with_field("end", std::string(relay_end_name(stats.end))));
}

// How long to wait for the client's first bytes. On an endpoint with L7 rules the client must
// speak first (HTTP), so it gets the head timeout; elsewhere a server-speaks-first protocol
// (SMTP, SSH) would wait forever, so after a short look the tunnel becomes a raw relay.
Clock::duration sniff_timeout(const ProxyContext& context,
                              const policy::ConnectDecision& decision) {
  if (decision.has_l7_route) return context.options.head_timeout;
  return kSniffTimeout;
}

// Reads until the first bytes say which protocol the client speaks; for TLS, until its whole
// ClientHello is in (its ALPN decides whether it can be intercepted).
asio::awaitable<TunnelProtocol> sniff(ProxyContext& context, StreamReader& reader,
                                      const policy::ConnectDecision& decision,
                                      ClientHelloInfo& hello) {
  const Clock::time_point deadline = Clock::now() + sniff_timeout(context, decision);
  for (;;) {
    TunnelProtocol protocol = classify_tunnel_bytes(reader.pending());
    if (protocol == TunnelProtocol::kTls) {
      const ClientHelloParse parse = parse_client_hello(reader.pending());
      if (parse.status == ClientHelloStatus::kComplete) {
        hello = parse.info;
        co_return protocol;
      }
      if (parse.status == ClientHelloStatus::kInvalid) co_return TunnelProtocol::kUnknown;
    } else if (protocol != TunnelProtocol::kNeedMore) {
      co_return protocol;
    }
    const Clock::time_point tls_deadline = Clock::now() + context.options.head_timeout;
    const ReadOutcome read = co_await reader.fill(
        protocol == TunnelProtocol::kTls ? std::max(deadline, tls_deadline) : deadline);
    if (read.error) co_return TunnelProtocol::kNeedMore;  // silent, closed or too slow
  }
}

asio::awaitable<void> dispatch_inspected(ProxyContext& context, const ConnectionInfo& info,
                                         TunnelTarget& target, asio::ip::tcp::socket& client,
                                         std::string leftover, asio::ip::tcp::socket& upstream) {
  TcpStream client_stream(client);
  StreamReader reader(client_stream);
  reader.prepend(leftover);
  ClientHelloInfo hello;
  const TunnelProtocol protocol = co_await sniff(context, reader, target.decision, hello);
  const bool l7 = target.decision.has_l7_route;
  switch (protocol) {
    case TunnelProtocol::kTls:
      // A client that can only speak h2 (gRPC) cannot be served by the HTTP/1.1 relay; where
      // no rule needs the requests, its bytes pass untouched.
      if (l7 || hello.offers_http11()) {
        target.tls = true;
        co_await intercept_tls_tunnel(context, info, target, client, std::string(reader.pending()),
                                      upstream);
        co_return;
      }
      break;
    case TunnelProtocol::kHttp: {
      TcpStream upstream_stream(upstream);
      co_await serve_http_tunnel(context, info, target, reader, upstream_stream);
      co_return;
    }
    case TunnelProtocol::kH2cPreface:
    case TunnelProtocol::kUnknown:
    case TunnelProtocol::kNeedMore:
      if (l7) {
        const auto kind = protocol == TunnelProtocol::kH2cPreface ? UnsupportedL7::kH2c
                                                                  : UnsupportedL7::kUnknownProtocol;
        report_denial(context, info,
                      events::network_open_denied(target.host, target.port,
                                                  "unsupported protocol on an L7 endpoint"),
                      DenialEvent{target.host, target.port, "-",
                                  "unsupported protocol on an L7 endpoint", "l7-protocol"});
        co_await refuse(context, client, unsupported_l7_protocol_response(kind));
        co_return;
      }
      break;
  }
  co_await relay_tunnel(context, info, target.host, target.port, target.dst_ip, client, upstream,
                        reader.pending());
}

}  // namespace

asio::awaitable<void> handle_connect(ProxyContext& context, const ConnectionInfo& info,
                                     asio::ip::tcp::socket& client, const RequestHead& head,
                                     std::string leftover) {
  auto target = parse_connect_target(head.target);
  if (!target.ok()) {
    context.log.emit(events::network_open_denied(head.target, 0, target.error().message)
                         .with_cid(info.cid)
                         .with_src(info.peer_ip, info.peer_port));
    co_await refuse(context, client, bad_request_response());
    co_return;
  }
  const std::string& host = target->host;
  const uint16_t port = target->port;
  // A virtual host: no policy, identity or SSRF check applies (spec §5.1).
  if (is_inference_host(host)) {
    co_await handle_inference_connect(context, info, client, std::move(leftover));
    co_return;
  }

  const auto policy = context.store.current();
  const policy::ConnectDecision decision = decide_connection(context, info, *policy, host, port);
  if (decision.action != policy::Action::kAllow) {
    report_denial(context, info, events::network_open_denied(host, port, decision.reason),
                  DenialEvent{host, port, "-", decision.reason, "connect"});
    co_await refuse(context, client, connect_denied_response(host, port, decision.reason));
    co_return;
  }
  if (uninspected_credentials(context, decision, host, port)) {
    const std::string reason = "credentialed endpoint requires L7 inspection";
    report_denial(context, info, events::network_open_denied(host, port, reason),
                  DenialEvent{host, port, "-", reason, "credentials"});
    co_await refuse(context, client, uninspected_credentials_response());
    co_return;
  }
  // Spec §2.8 step 11: a tunnel we would have to terminate cannot open without a CA.
  const bool inspect = should_inspect(context, decision, host, port);
  if (inspect && context.tls == nullptr) {
    context.log.emit(events::network_open_denied(host, port, "TLS termination unavailable")
                         .with_cid(info.cid)
                         .with_src(info.peer_ip, info.peer_port));
    co_await refuse(context, client, tls_termination_unavailable_response());
    co_return;
  }

  Upstream upstream = co_await open_upstream(context, host, port, decision);
  switch (upstream.failure) {
    case Upstream::Failure::kNone:
      break;
    case Upstream::Failure::kSsrf:
      report_denial(
          context, info,
          events::network_open_blocked(host, port, upstream.ssrf.kind_text(), upstream.detail),
          DenialEvent{host, port, "-", upstream.detail, "ssrf"});
      co_await refuse(context, client,
                      connect_ssrf_denied_response(host, port, upstream.ssrf.kind_text()));
      co_return;
    case Upstream::Failure::kResolve:
    case Upstream::Failure::kRefused:
    case Upstream::Failure::kTimeout: {
      const bool timed_out = upstream.failure == Upstream::Failure::kTimeout;
      context.log.emit(events::network_open_denied(host, port, upstream.detail)
                           .with_cid(info.cid)
                           .with_message(std::string(timed_out ? "CONNECT upstream timed out "
                                                               : "CONNECT upstream unreachable ") +
                                         host + ":" + std::to_string(port)));
      const std::string response = timed_out ? upstream_timeout_response(host, port)
                                             : upstream_unreachable_response(host, port);
      co_await refuse(context, client, response);
      co_return;
    }
  }

  // The policy may have been replaced while we resolved and dialed: decide again under the
  // generation that is current now, so no tunnel opens on a withdrawn policy.
  if (context.store.generation() != decision.generation) {
    const auto now = decide_connection(context, info, *context.store.current(), host, port);
    if (now.action != policy::Action::kAllow) {
      report_denial(context, info, events::network_open_denied(host, port, now.reason),
                    DenialEvent{host, port, "-", now.reason, "connect"});
      co_await refuse(context, client, connect_policy_changed_response(host, port));
      co_return;
    }
  }

  const std::string address = upstream.endpoint.address().to_string();
  if (co_await write_all(client, connection_established_response(), context.options.head_timeout)) {
    co_return;
  }
  context.log.emit(
      events::network_open_allowed(host, port, decision.matched_policy, decision.has_l7_route)
          .with_cid(info.cid)
          .with_src(info.peer_ip, info.peer_port)
          .with_dst_ip(address));

  if (!inspect) {
    co_await relay_tunnel(context, info, host, port, address, client, *upstream.socket, leftover);
    co_return;
  }
  TunnelTarget tunnel{host, port, false, address, policy, decision};
  co_await dispatch_inspected(context, info, tunnel, client, std::move(leftover), *upstream.socket);
}

}  // namespace openshell::proxy::detail
