// One client connection: read the request head within the head timeout, then hand the
// connection to the CONNECT or forward handler.
#include <asio/this_coro.hpp>

#include "context.hpp"
#include "io.hpp"
#include "openshell/core/events.hpp"
#include "openshell/proxy/http_response.hpp"

namespace openshell::proxy::detail {

asio::awaitable<std::optional<RequestHead>> read_request_head(ProxyContext& context,
                                                              StreamReader& reader,
                                                              bool between_requests,
                                                              size_t head_limit) {
  RequestHeadParser parser(head_limit);
  const auto head_deadline = [&] { return Clock::now() + context.options.head_timeout; };
  Clock::time_point deadline = between_requests && reader.pending().empty()
                                   ? Clock::now() + context.options.idle_timeout
                                   : head_deadline();
  bool started = !reader.pending().empty();
  for (;;) {
    if (!reader.pending().empty()) {
      if (!started) {
        started = true;
        deadline = head_deadline();
      }
      const auto progress = parser.feed(reader.pending());
      reader.consume(progress.consumed);
      if (progress.status == RequestHeadParser::Status::kComplete) {
        co_return std::move(parser.head());
      }
      if (progress.status == RequestHeadParser::Status::kError) {
        context.log.emit(core::Event::network(core::NetworkActivity::kOpen)
                             .denied()
                             .with_message("request rejected: " + parser.reason())
                             .with_reason(std::string(head_error_name(parser.error()))));
        (void)co_await write_all(reader.stream(), head_error_response(parser.error()),
                                 context.options.head_timeout);
        co_return std::nullopt;
      }
    }
    const ReadOutcome read =
        started ? co_await reader.fill(deadline) : co_await reader.fill_when_ready(deadline);
    if (read.error) co_return std::nullopt;  // closed, reset or too slow: nothing to answer
  }
}

asio::awaitable<void> serve_connection(ProxyContext& context, asio::ip::tcp::socket client,
                                       asio::ip::tcp::endpoint peer) {
  ConnectionInfo info;
  info.cid = core::CorrelationId::next();
  std::error_code ignored;
  info.peer_ip = peer.address().to_string();
  info.peer_port = peer.port();
  client.set_option(asio::ip::tcp::no_delay(true), ignored);

  TcpStream stream(client);
  StreamReader reader(stream);
  std::optional<RequestHead> head = co_await read_request_head(context, reader, false);
  if (!head) co_return;
  std::string leftover(reader.pending());
  if (head->is_connect()) {
    co_await handle_connect(context, info, client, *head, std::move(leftover));
  } else {
    co_await handle_forward(context, info, client, std::move(*head), std::move(leftover));
  }
}

policy::ConnectDecision decide_connection(const ProxyContext& context,
                                          const policy::CompiledPolicy& policy,
                                          const policy::ConnectInput& input) {
  policy::ConnectDecision decision = policy.decide_connect(input);
  if (decision.action == policy::Action::kAllow && context.options.require_identity) {
    decision.action = policy::Action::kDeny;
    decision.matched_policy = {};
    decision.reason =
        "process identity is required (--require-identity) but this proxy has no identity "
        "source";
  }
  return decision;
}

void report_denial(ProxyContext& context, const ConnectionInfo& info, core::Event event,
                   DenialEvent denial) {
  event.with_cid(info.cid).with_src(info.peer_ip, info.peer_port);
  context.log.emit(event);
  context.denials.record(denial);
}

}  // namespace openshell::proxy::detail
