// Forward proxy (absolute-form `GET http://host/path`, spec §2.10): every request on a keep-alive
// client connection is decided on its own, under the policy generation current when it arrives.
#include <asio/this_coro.hpp>
#include <variant>

#include "body.hpp"
#include "body_marker_guard.hpp"
#include "context.hpp"
#include "inference_router.hpp"
#include "io.hpp"
#include "openshell/core/events.hpp"
#include "openshell/proxy/credential_rewrite.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/inference_api.hpp"
#include "request_credentials.hpp"

namespace openshell::proxy::detail {

namespace {

namespace events = core::events;

// What became of one request: whether the client connection may carry another.
enum class Next { kClose, kKeepAlive };

std::string_view path_without_query(std::string_view path) {
  return path.substr(0, path.find('?'));
}

core::Event forward_event(std::string_view message, const ProxyUri& uri, std::string_view method,
                          std::string_view path) {
  return core::Event::http_activity(core::HttpActivity::kOther)
      .with_message(message)
      .with_http(method, "http", uri.host, uri.port, path)
      .with_dst(uri.host, uri.port);
}

// Drops `Expect: 100-continue`: the proxy answers it itself once the request is admitted, so the
// client does not wait on an upstream that never sees the header.
bool take_expect_continue(RequestHead& head) {
  bool expected = false;
  std::erase_if(head.headers, [&](const HeaderField& field) {
    if (!ascii_iequals(field.name, "expect")) return false;
    expected = expected || ascii_iequals(field.value, "100-continue");
    return true;
  });
  return expected;
}

// Spec §2.7: an absolute-form target whose authority differs from the Host header is refused,
// so the policy and the origin can never see two different hosts.
bool host_header_matches(const RequestHead& head, const ProxyUri& uri) {
  const auto host = head.host();
  if (!host) return true;  // HTTP/1.0 without Host: the target alone names the origin
  const auto authority = parse_host_header(*host, uri.port);
  return authority.ok() && authority->host == uri.host && authority->port == uri.port;
}

struct ForwardRequest {
  ProxyContext& context;
  const ConnectionInfo& info;
  ByteStream& client;
  StreamReader& reader;
  RequestHead& head;
};

asio::awaitable<Next> answer(ForwardRequest& r, std::string_view response) {
  (void)co_await write_all(r.client, response, r.context.options.head_timeout);
  co_return Next::kClose;
}

asio::awaitable<Next> forward_one(ForwardRequest& r) {
  ProxyContext& context = r.context;
  const ConnectionInfo& info = r.info;
  RequestHead& head = r.head;

  auto parsed = parse_proxy_uri(head.target);
  if (!parsed.ok()) {
    context.log.emit(core::Event::http_activity(core::HttpActivity::kOther)
                         .denied()
                         .with_message("FORWARD rejected: malformed request target")
                         .with_reason(parsed.error().message)
                         .with_cid(info.cid));
    co_return co_await answer(r, bad_request_response());
  }
  const ProxyUri& uri = parsed.value();
  if (uri.scheme == "https") co_return co_await answer(r, https_forward_response());
  if (uri.scheme != "http") co_return co_await answer(r, unsupported_proxy_scheme_response());
  if (!host_header_matches(head, uri)) {
    context.log.emit(forward_event("FORWARD rejected: Host header differs from the request target",
                                   uri, head.method, path_without_query(uri.path))
                         .denied()
                         .with_cid(info.cid));
    co_return co_await answer(r, bad_request_response());
  }

  // inference.local is served here, not forwarded (issue 8: plain HTTP too, unlike spec §5.1).
  if (is_inference_host(uri.host)) {
    const bool keep_alive =
        co_await serve_inference_request(context, info, r.reader, head, uri.path, false);
    co_return keep_alive ? Next::kKeepAlive : Next::kClose;
  }

  // Placeholders are redacted before anything sees the target (spec §4.4).
  const std::string log_path = redact_target(path_without_query(uri.path));
  const auto policy = context.store.current();
  const EngineInput connection(info, uri.host, uri.port);
  const policy::ConnectDecision decision =
      decide_connection(context, info, *policy, uri.host, uri.port);
  if (decision.action != policy::Action::kAllow) {
    report_denial(context, info,
                  forward_event("FORWARD blocked: " + decision.reason, uri, head.method, log_path)
                      .denied()
                      .with_reason(decision.reason),
                  DenialEvent{uri.host, uri.port, "-", decision.reason, "forward"});
    co_return co_await answer(r,
                              forward_denied_response(head.method, uri.host, uri.port, log_path));
  }

  const auto canonical = policy::canonicalize_target(uri.path, policy::canon_options(decision));
  if (std::holds_alternative<policy::CanonError>(canonical)) {
    co_return co_await answer(r, invalid_request_target_response());
  }
  const auto& target = std::get<policy::CanonicalTarget>(canonical);
  const std::string redacted_path = redact_target(target.path);

  if (decision.has_l7_route) {
    policy::QueryParams query;
    const std::string redacted_query = redact_target("?" + target.raw_query).substr(1);
    if (target.has_query && !policy::parse_query(redacted_query, query)) {
      co_return co_await answer(r, invalid_request_target_response());
    }
    const policy::Decision l7 = policy->decide_request(
        connection.get(), policy::RequestInput{head.method, redacted_path, &query});
    const auto kind = l7.action == policy::Action::kAllow   ? events::L7Decision::kAllow
                      : l7.action == policy::Action::kAudit ? events::L7Decision::kAudit
                                                            : events::L7Decision::kDeny;
    core::Event event = events::http_l7_decision(kind, head.method, uri.host, uri.port,
                                                 redacted_path, l7.matched_policy, l7.reason)
                            .with_cid(info.cid);
    if (l7.action == policy::Action::kDeny) {
      report_denial(context, info, std::move(event),
                    DenialEvent{uri.host, uri.port, "-", l7.reason, "forward-l7-deny"});
      if (l7.matched_policy.empty() || l7.layer == policy::Layer::kL4) {
        co_return co_await answer(
            r, forward_denied_response(head.method, uri.host, uri.port, redacted_path));
      }
      if (l7.reason == "no L7 endpoint path matched request") {
        co_return co_await answer(
            r, forward_no_l7_path_response(head.method, uri.host, uri.port, redacted_path));
      }
      co_return co_await answer(
          r, forward_l7_denied_response(head.method, uri.host, uri.port, redacted_path, l7.reason));
    }
    context.log.emit(event);
  }

  // Secrets go in only now, after the policy saw the redacted target (spec §4.3).
  std::string origin_target = target.path;
  if (target.has_query) origin_target += "?" + target.raw_query;
  const RequestCredentials credentials = request_credentials(context, uri.host, uri.port);
  if (auto refusal = inject_head_credentials(context, info, credentials, origin_target, head)) {
    co_return co_await answer(r, *refusal);
  }
  std::optional<std::string> rewritten_body;
  if (wants_body_rewrite(decision, head)) {
    BufferedBody buffered =
        co_await buffer_credential_body(context, info, credentials, redacted_path, r.reader, head);
    if (!buffered.body) {
      if (buffered.refusal.empty()) co_return Next::kClose;
      co_return co_await answer(r, buffered.refusal);
    }
    rewritten_body = std::move(buffered.body);
  }

  Upstream upstream = co_await open_upstream(context, uri.host, uri.port, decision);
  switch (upstream.failure) {
    case Upstream::Failure::kNone:
      break;
    case Upstream::Failure::kSsrf:
      report_denial(context, info,
                    forward_event("FORWARD blocked: " + std::string(upstream.ssrf.kind_text()) +
                                      " for " + uri.host + ":" + std::to_string(uri.port),
                                  uri, head.method, log_path)
                        .denied()
                        .with_reason(upstream.detail),
                    DenialEvent{uri.host, uri.port, "-", upstream.detail, "ssrf"});
      co_return co_await answer(r, forward_ssrf_denied_response(head.method, uri.host, uri.port,
                                                                upstream.ssrf.kind_text()));
    case Upstream::Failure::kResolve:
    case Upstream::Failure::kRefused:
    case Upstream::Failure::kTimeout:
      context.log.emit(forward_event("FORWARD upstream unreachable", uri, head.method, log_path)
                           .with_reason(upstream.detail)
                           .with_cid(info.cid));
      // Named, not a ?: temporary inside co_await: g++ 12 destroys such temporaries twice.
      const std::string response = upstream.failure == Upstream::Failure::kTimeout
                                       ? upstream_timeout_response(uri.host, uri.port)
                                       : upstream_unreachable_response(uri.host, uri.port);
      co_return co_await answer(r, response);
  }

  const Clock::duration idle = context.options.idle_timeout;
  const Clock::time_point started = Clock::now();
  TcpStream origin(*upstream.socket);
  const bool expect_continue = take_expect_continue(head);
  const std::string upstream_head =
      rewrite_forward_head(head, uri, origin_target, UpstreamConnection::kClose);
  if (co_await write_all(origin, upstream_head, idle)) {
    co_return co_await answer(r, upstream_unreachable_response(uri.host, uri.port));
  }
  if (expect_continue) {
    if (co_await write_all(r.client, "HTTP/1.1 100 Continue\r\n\r\n", idle)) co_return Next::kClose;
  }
  const BodyFraming request_framing = head.chunked              ? BodyFraming::kChunked
                                      : head.content_length > 0 ? BodyFraming::kLength
                                                                : BodyFraming::kNone;
  BodyRelay request_body;
  if (rewritten_body) {
    const std::error_code error = co_await write_all(origin, *rewritten_body, idle);
    request_body.ok = !error;
    request_body.bytes = rewritten_body->size();
    if (error) request_body.error = "write failed: " + error.message();
    wipe(*rewritten_body);
  } else if (guards_streamed_body(credentials, head)) {
    const GuardedBodyRelay guarded = co_await relay_body_without_markers(
        r.reader, origin, request_framing, head.content_length.value_or(0), idle);
    if (guarded.marker) {
      co_return co_await answer(
          r, body_marker_refusal(context, info, credentials, head.method, redacted_path));
    }
    request_body = guarded.relay;
  } else {
    request_body = co_await relay_body(r.reader, origin, request_framing,
                                       head.content_length.value_or(0), idle);
  }
  if (!request_body.ok) {
    context.log.emit(forward_event("FORWARD request body rejected", uri, head.method, log_path)
                         .denied()
                         .with_reason(request_body.error)
                         .with_cid(info.cid));
    if (request_body.malformed) co_return co_await answer(r, bad_request_response());
    co_return Next::kClose;
  }

  // Response: skip interim 1xx heads (forwarded as they are), then frame the final one.
  StreamReader from_origin(origin);
  ResponseHeadResult response;
  for (;;) {
    response = parse_response_head(from_origin.pending());
    if (response.status == ResponseParse::kComplete) {
      const int status = response.head.status;
      if (status >= 100 && status < 200 && status != 101) {
        from_origin.consume(response.head.head_size);
        continue;
      }
      break;
    }
    if (response.status == ResponseParse::kError) break;
    const ReadOutcome read = co_await from_origin.fill(Clock::now() + idle);
    if (read.error) {
      response.status = ResponseParse::kError;
      response.error = "upstream closed before a response: " + read.error.message();
      break;
    }
  }
  if (response.status != ResponseParse::kComplete || response.head.status == 101) {
    context.log.emit(forward_event("FORWARD bad upstream response", uri, head.method, log_path)
                         .with_reason(response.error)
                         .with_cid(info.cid));
    co_return co_await answer(r, upstream_unreachable_response(uri.host, uri.port));
  }
  from_origin.consume(response.head.head_size);
  const BodyFraming framing = response_body_framing(response.head, head.method);
  const bool keep_alive =
      head.keep_alive && framing != BodyFraming::kUntilClose && !context.draining;
  if (co_await write_all(r.client, rewrite_response_head(response.head, keep_alive, head.version),
                         idle)) {
    co_return Next::kClose;
  }
  const BodyRelay response_body = co_await relay_body(
      from_origin, r.client, framing, response.head.content_length.value_or(0), idle);
  context.log.emit(
      forward_event("FORWARD allowed " + head.method + " " + uri.host + ":" +
                        std::to_string(uri.port) + redacted_path,
                    uri, head.method, redacted_path)
          .allowed()
          .with_http_status(response.head.status)
          .with_traffic(response_body.bytes, request_body.bytes)
          .with_duration_ms(
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count())
          .with_rule(decision.matched_policy, "opa")
          .with_dst_ip(upstream.endpoint.address().to_string())
          .with_cid(info.cid));
  co_return (response_body.ok && keep_alive) ? Next::kKeepAlive : Next::kClose;
}

}  // namespace

asio::awaitable<void> handle_forward(ProxyContext& context, const ConnectionInfo& info,
                                     asio::ip::tcp::socket& client, RequestHead head,
                                     std::string leftover) {
  TcpStream stream(client);
  StreamReader reader(stream);
  reader.prepend(leftover);
  for (;;) {
    ForwardRequest request{context, info, stream, reader, head};
    if (co_await forward_one(request) == Next::kClose) co_return;
    std::optional<RequestHead> next = co_await read_request_head(context, reader, true);
    if (!next) co_return;
    if (next->is_connect()) {
      std::string rest(reader.pending());
      co_await handle_connect(context, info, client, *next, std::move(rest));
      co_return;
    }
    head = std::move(*next);
  }
}

}  // namespace openshell::proxy::detail
