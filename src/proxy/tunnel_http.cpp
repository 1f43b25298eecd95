// HTTP inside a tunnel: per-request authority check, L7 decision (endpoints with `protocol:
// rest`) or logging only (other terminated endpoints), then one request/response exchange with
// the tunnel's upstream.
#include "tunnel_http.hpp"

#include <variant>

#include "body.hpp"
#include "body_marker_guard.hpp"
#include "openshell/core/events.hpp"
#include "openshell/proxy/credential_rewrite.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/response_head.hpp"
#include "request_credentials.hpp"

namespace openshell::proxy::detail {

namespace {

namespace events = core::events;

enum class Next { kClose, kKeepAlive };

struct Tunnel {
  ProxyContext& context;
  const ConnectionInfo& info;
  const TunnelTarget& target;
  StreamReader& client;
  ByteStream& upstream_stream;
  StreamReader upstream;
  std::shared_ptr<const policy::CompiledPolicy> policy;
  policy::ConnectDecision decision;
  std::optional<std::string> body;  // a credential-rewritten request body, sent instead
  bool guard_body = false;          // credentials are set: a streamed body is scanned for markers
};

bool is_h2c_upgrade(const RequestHead& head) {
  const HeaderField* upgrade = head.find("upgrade");
  if (upgrade == nullptr) return false;
  std::string value = upgrade->value;
  for (char& c : value)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return value.find("h2c") != std::string::npos;
}

bool expects_continue(const RequestHead& head) {
  const HeaderField* expect = head.find("expect");
  return expect != nullptr && ascii_iequals(expect->value, "100-continue") && head.has_body();
}

std::string_view path_only(std::string_view target) {
  return target.substr(0, target.find('?'));
}

asio::awaitable<Next> refuse(Tunnel& t, std::string_view response) {
  (void)co_await write_all(t.client.stream(), response, t.context.options.head_timeout);
  co_return Next::kClose;
}

// The decision the tunnel was admitted under, renewed when the policy has been replaced since
// (DESIGN.md: each request is decided under the generation current when it arrives).
bool renew_decision(Tunnel& t) {
  if (t.context.store.generation() == t.decision.generation) {
    return t.decision.action == policy::Action::kAllow;
  }
  t.policy = t.context.store.current();
  t.decision = decide_connection(t.context, t.info, *t.policy, t.target.host, t.target.port);
  return t.decision.action == policy::Action::kAllow;
}

struct Exchange {
  int status = 0;
  uint64_t request_bytes = 0;
  uint64_t response_bytes = 0;
  bool keep_alive = false;
  bool upgraded = false;
  bool answered = false;     // some response bytes reached the client
  bool body_marker = false;  // the request body carried a credential placeholder marker
  std::string failure;
};

asio::awaitable<bool> send_request_body(Tunnel& t, const RequestHead& head, Exchange& result) {
  if (t.body) {
    const std::error_code error =
        co_await write_all(t.upstream_stream, *t.body, t.context.options.idle_timeout);
    result.request_bytes = t.body->size();
    wipe(*t.body);
    t.body.reset();
    if (error) result.failure = "request body: " + error.message();
    co_return !error;
  }
  const BodyFraming framing = head.chunked                          ? BodyFraming::kChunked
                              : head.content_length.value_or(0) > 0 ? BodyFraming::kLength
                                                                    : BodyFraming::kNone;
  if (t.guard_body) {
    const GuardedBodyRelay guarded = co_await relay_body_without_markers(
        t.client, t.upstream_stream, framing, head.content_length.value_or(0),
        t.context.options.idle_timeout);
    result.request_bytes = guarded.relay.bytes;
    result.body_marker = guarded.marker;
    if (!guarded.relay.ok) result.failure = "request body: " + guarded.relay.error;
    co_return guarded.relay.ok;
  }
  const BodyRelay body =
      co_await relay_body(t.client, t.upstream_stream, framing, head.content_length.value_or(0),
                          t.context.options.idle_timeout);
  result.request_bytes = body.bytes;
  if (!body.ok) result.failure = "request body: " + body.error;
  co_return body.ok;
}

// Reads the next response head from upstream (interim or final).
asio::awaitable<ResponseHeadResult> read_response_head(Tunnel& t) {
  for (;;) {
    ResponseHeadResult response = parse_response_head(t.upstream.pending());
    if (response.status != ResponseParse::kNeedMore) co_return response;
    const ReadOutcome read =
        co_await t.upstream.fill(Clock::now() + t.context.options.idle_timeout);
    if (read.error) {
      response.status = ResponseParse::kError;
      response.error = "upstream closed before a response: " + read.error.message();
      co_return response;
    }
  }
}

asio::awaitable<void> relay_upgraded(Tunnel& t, Exchange& result) {
  ByteStream& client = t.client.stream();
  // Bytes either side sent right behind the 101 exchange belong to the new protocol.
  if (!t.upstream.pending().empty()) {
    if (co_await write_all(client, t.upstream.pending(), t.context.options.idle_timeout)) co_return;
    t.upstream.consume(t.upstream.pending().size());
  }
  const std::string_view early = t.client.pending();
  RelayOptions options;
  options.idle_timeout = t.context.options.idle_timeout;
  options.shutdown = &t.context.tunnels;
  const RelayStats stats = co_await relay(
      client, t.upstream_stream, options,
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(early.data()), early.size()));
  result.request_bytes += stats.client_to_upstream;
  result.response_bytes += stats.upstream_to_client;
}

// Sends one request upstream and relays its response (interim 1xx heads included).
asio::awaitable<Exchange> exchange(Tunnel& t, const RequestHead& head) {
  Exchange result;
  const Clock::duration idle = t.context.options.idle_timeout;
  ByteStream& client = t.client.stream();
  if (auto error = co_await write_all(t.upstream_stream, serialize_request_head(head), idle)) {
    result.failure = "upstream write failed: " + error.message();
    co_return result;
  }
  // With `Expect: 100-continue` the client holds its body until told to send it.
  bool body_sent = !expects_continue(head);
  if (body_sent && !co_await send_request_body(t, head, result)) co_return result;

  ResponseHeadResult response;
  for (;;) {
    response = co_await read_response_head(t);
    if (response.status != ResponseParse::kComplete) {
      result.failure = response.error;
      co_return result;
    }
    const int status = response.head.status;
    if (status >= 200 || status == 101) break;
    if (co_await write_all(client, t.upstream.pending().substr(0, response.head.head_size), idle)) {
      co_return result;
    }
    result.answered = true;
    t.upstream.consume(response.head.head_size);
    if (status == 100 && !body_sent) {
      body_sent = true;
      if (!co_await send_request_body(t, head, result)) co_return result;
    }
  }
  result.status = response.head.status;
  if (co_await write_all(client, t.upstream.pending().substr(0, response.head.head_size), idle)) {
    co_return result;
  }
  result.answered = true;
  t.upstream.consume(response.head.head_size);
  if (result.status == 101) {
    result.upgraded = true;
    co_await relay_upgraded(t, result);
    co_return result;
  }
  const BodyFraming framing = response_body_framing(response.head, head.method);
  const BodyRelay body = co_await relay_body(t.upstream, client, framing,
                                             response.head.content_length.value_or(0), idle);
  result.response_bytes = body.bytes;
  if (!body.ok) result.failure = "response body: " + body.error;
  // A final answer that arrived before the body was sent leaves the client's body in flight.
  result.keep_alive = body.ok && body_sent && head.keep_alive && !response.head.close &&
                      framing != BodyFraming::kUntilClose && !t.context.draining;
  co_return result;
}

core::Event request_event(const Tunnel& t, const RequestHead& head, std::string_view path,
                          std::string_view policy, events::L7Decision kind,
                          std::string_view reason) {
  if (t.decision.has_l7_route) {
    return events::http_l7_decision(kind, head.method, t.target.host, t.target.port, path, policy,
                                    reason);
  }
  // A terminated endpoint without L7 rules: the request is logged, not decided.
  return core::Event::http_activity(core::HttpActivity::kOther)
      .allowed()
      .with_message("HTTP_REQUEST " + head.method + " " + t.target.host + ":" +
                    std::to_string(t.target.port) + std::string(path))
      .with_http(head.method, t.target.tls ? "https" : "http", t.target.host, t.target.port, path)
      .with_dst(t.target.host, t.target.port)
      .with_rule(policy, "opa");
}

asio::awaitable<Next> serve_request(Tunnel& t, RequestHead& head) {
  ProxyContext& context = t.context;
  const Clock::time_point started = Clock::now();
  const std::string& host = t.target.host;
  const uint16_t port = t.target.port;

  if (!renew_decision(t)) {
    report_denial(context, t.info, events::network_open_denied(host, port, t.decision.reason),
                  DenialEvent{host, port, "-", t.decision.reason, "connect"});
    co_return co_await refuse(t, connect_policy_changed_response(host, port));
  }
  const bool inspect = t.decision.has_l7_route;
  if (!request_authority_matches(head, t.target.host, t.target.port, t.target.tls ? 443 : 80)) {
    const std::string reason = "request authority does not match the tunnel's CONNECT target";
    report_denial(context, t.info,
                  request_event(t, head, path_only(head.target), t.decision.matched_policy,
                                events::L7Decision::kDeny, reason)
                      .denied()
                      .with_reason(reason),
                  DenialEvent{host, port, "-", reason, "l7-authority"});
    co_return co_await refuse(t, request_authority_mismatch_response());
  }
  if (inspect && is_h2c_upgrade(head)) {
    co_return co_await refuse(t, unsupported_l7_protocol_response(UnsupportedL7::kH2c));
  }

  // The canonical target is what the policy sees and, on inspected endpoints, what the origin
  // receives, so the two can never disagree about the path.
  // Placeholders are redacted before anything sees the target (spec §4.4).
  std::string log_path = redact_target(path_only(head.target));
  std::string_view policy_name = t.decision.matched_policy;
  std::string reason;
  auto kind = events::L7Decision::kAllow;
  const auto canonical =
      policy::canonicalize_target(head.target, policy::canon_options(t.decision));
  if (const auto* target = std::get_if<policy::CanonicalTarget>(&canonical)) {
    log_path = redact_target(target->path);
    if (inspect) {
      policy::QueryParams query;
      const std::string redacted_query = redact_target("?" + target->raw_query).substr(1);
      if (target->has_query && !policy::parse_query(redacted_query, query)) {
        co_return co_await refuse(t, invalid_request_target_response());
      }
      const EngineInput connection(t.info, host, port);
      const policy::Decision l7 = t.policy->decide_request(
          connection.get(), policy::RequestInput{head.method, log_path, &query});
      if (!l7.matched_policy.empty()) policy_name = l7.matched_policy;
      reason = l7.reason;
      kind = l7.action == policy::Action::kAllow   ? events::L7Decision::kAllow
             : l7.action == policy::Action::kAudit ? events::L7Decision::kAudit
                                                   : events::L7Decision::kDeny;
      if (kind == events::L7Decision::kDeny) {
        report_denial(context, t.info,
                      request_event(t, head, log_path, policy_name, kind, reason)
                          .with_duration_ms(0)
                          .with_dst_ip(t.target.dst_ip),
                      DenialEvent{host, port, "-", reason, "l7-deny"});
        // Both arms string_view: with "" the arms would meet in a temporary std::string copy.
        const std::string_view binary =
            t.info.identity ? std::string_view(t.info.identity->exe) : std::string_view();
        co_return co_await refuse(t, l7_denied_response(L7Denial{policy_name, head.method, log_path,
                                                                 host, port, binary, reason}));
      }
      head.target = target->path;
      if (target->has_query) head.target += "?" + target->raw_query;
    }
  } else if (inspect) {
    co_return co_await refuse(t, invalid_request_target_response());
  }

  const RequestCredentials credentials = request_credentials(context, host, port);
  if (auto refusal = inject_head_credentials(context, t.info, credentials, head.target, head)) {
    co_return co_await refuse(t, *refusal);
  }
  if (wants_body_rewrite(t.decision, head)) {
    BufferedBody buffered =
        co_await buffer_credential_body(context, t.info, credentials, log_path, t.client, head);
    if (!buffered.body) {
      if (buffered.refusal.empty()) co_return Next::kClose;
      co_return co_await refuse(t, buffered.refusal);
    }
    t.body = std::move(buffered.body);
  }
  t.guard_body = !t.body && guards_streamed_body(credentials, head);
  const Exchange result = co_await exchange(t, head);
  core::Event event = request_event(t, head, log_path, policy_name, kind, reason);
  event.with_http_status(result.status)
      .with_traffic(result.response_bytes, result.request_bytes)
      .with_duration_ms(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count())
      .with_dst_ip(t.target.dst_ip)
      .with_cid(t.info.cid);
  if (!result.failure.empty()) event.with_field("failure", result.failure);
  if (result.upgraded) event.with_field("upgraded", "true");
  context.log.emit(event);
  if (result.body_marker && !result.answered) {
    co_return co_await refuse(
        t, body_marker_refusal(context, t.info, credentials, head.method, log_path));
  }
  if (!result.failure.empty() && !result.answered) {
    co_return co_await refuse(t, upstream_unreachable_response(host, port));
  }
  co_return result.keep_alive ? Next::kKeepAlive : Next::kClose;
}

}  // namespace

asio::awaitable<void> serve_http_tunnel(ProxyContext& context, const ConnectionInfo& info,
                                        const TunnelTarget& target, StreamReader& client,
                                        ByteStream& upstream) {
  Tunnel tunnel{
      context,         info, target, client, upstream, StreamReader(upstream), target.policy,
      target.decision, {}};
  for (;;) {
    std::optional<RequestHead> head =
        co_await read_request_head(context, client, true, kTunnelRequestHeadLimit);
    if (!head) break;
    if (co_await serve_request(tunnel, *head) == Next::kClose) break;
  }
  co_await upstream.shutdown_send();
  co_await client.stream().shutdown_send();
  client.stream().close();
  upstream.close();
}

}  // namespace openshell::proxy::detail
