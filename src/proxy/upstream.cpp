// Opening the upstream connection for an admitted request: the one place DNS, the SSRF guard and
// the dialer meet, shared by CONNECT and forward requests.
#include <asio/this_coro.hpp>

#include "context.hpp"

namespace openshell::proxy::detail {

asio::awaitable<Upstream> open_upstream(ProxyContext& context, const std::string& host,
                                        uint16_t port, const policy::ConnectDecision& decision) {
  Upstream upstream;
  auto plan = plan_destination(host, port, decision, context.ssrf);
  if (!plan) {
    upstream.failure = Upstream::Failure::kSsrf;
    upstream.ssrf = plan.error();
    upstream.detail = plan.error().detail;
    co_return upstream;
  }
  ResolveResult resolved = co_await context.resolver.resolve(host, port);
  if (!resolved.ok()) {
    upstream.failure = Upstream::Failure::kResolve;
    upstream.detail = resolved.error().message;
    co_return upstream;
  }
  auto validated = validate_addresses(plan.value(), resolved.value());
  if (!validated) {
    upstream.failure = Upstream::Failure::kSsrf;
    upstream.ssrf = validated.error();
    upstream.detail = validated.error().detail;
    co_return upstream;
  }
  const auto endpoints = to_endpoints(validated.value(), port);
  DialResult dialed =
      co_await dial(co_await asio::this_coro::executor, endpoints, context.options.connect_timeout);
  if (!dialed.ok()) {
    upstream.failure = dialed.failure == DialFailure::kTimedOut ? Upstream::Failure::kTimeout
                                                                : Upstream::Failure::kRefused;
    upstream.detail = dialed.describe();
    co_return upstream;
  }
  upstream.socket = std::move(dialed.socket);
  upstream.endpoint = dialed.endpoint;
  co_return upstream;
}

}  // namespace openshell::proxy::detail
