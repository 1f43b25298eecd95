// CONNECT: decide, check the destination, dial, answer 200 and relay (spec §2.8).
#include <asio/this_coro.hpp>

#include "context.hpp"
#include "io.hpp"
#include "openshell/core/events.hpp"
#include "openshell/proxy/http_response.hpp"

namespace openshell::proxy::detail {

namespace {

namespace events = core::events;

// Writes a refusal and logs why; the connection ends with it.
asio::awaitable<void> refuse(ProxyContext& context, asio::ip::tcp::socket& client,
                             std::string_view response) {
  (void)co_await write_all(client, response, context.options.head_timeout);
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

  const auto policy = context.store.current();
  const policy::ConnectDecision decision =
      decide_connection(context, *policy, {host, port, nullptr});
  if (decision.action != policy::Action::kAllow) {
    report_denial(context, info, events::network_open_denied(host, port, decision.reason),
                  DenialEvent{host, port, "-", decision.reason, "connect"});
    co_await refuse(context, client, connect_denied_response(host, port, decision.reason));
    co_return;
  }
  if (decision.has_l7_route) {
    // Per-request L7 rules cannot be enforced on an opaque tunnel; refuse rather than let
    // requests past the rules (inspection inside tunnels arrives with TLS interception).
    const std::string reason =
        "endpoint has L7 rules; per-request inspection inside CONNECT tunnels is not available "
        "in this build (use the forward proxy form http://… for plain HTTP)";
    report_denial(context, info, events::network_open_denied(host, port, reason),
                  DenialEvent{host, port, "-", reason, "connect"});
    co_await refuse(context, client, connect_denied_response(host, port, reason));
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
    const auto now = decide_connection(context, *context.store.current(), {host, port, nullptr});
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
  context.log.emit(events::network_open_allowed(host, port, decision.matched_policy)
                       .with_cid(info.cid)
                       .with_src(info.peer_ip, info.peer_port)
                       .with_dst_ip(address));

  RelayOptions options;
  options.idle_timeout = context.options.idle_timeout;
  options.shutdown = &context.tunnels;
  const auto* initial = reinterpret_cast<const std::byte*>(leftover.data());
  const RelayStats stats = co_await relay(client, *upstream.socket, options,
                                          std::span<const std::byte>(initial, leftover.size()));
  context.log.emit(
      events::network_close(
          host, port, stats.upstream_to_client, stats.client_to_upstream,
          std::chrono::duration_cast<std::chrono::milliseconds>(stats.duration).count())
          .with_cid(info.cid)
          .with_dst_ip(address)
          .with_field("end", std::string(relay_end_name(stats.end))));
}

}  // namespace openshell::proxy::detail
