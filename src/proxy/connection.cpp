// One client connection: read the request head within the head timeout, then hand the
// connection to the CONNECT or forward handler.
#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <memory>
#include <span>

#include "context.hpp"
#include "io.hpp"
#include "openshell/core/events.hpp"
#include "openshell/core/proxy_protocol.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/identity_source.hpp"

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

namespace {

bool starts_like_proxy_header(std::string_view bytes) {
  const size_t n = std::min(bytes.size(), core::kProxyV2Signature.size());
  return n > 0 && std::equal(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n),
                             core::kProxyV2Signature.begin(),
                             [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; });
}

void refuse_identity_header(ProxyContext& context, const ConnectionInfo& info,
                            std::string_view reason) {
  context.log.emit(core::Event::network(core::NetworkActivity::kRefuse)
                       .denied()
                       .with_message("PROXY header refused: " + std::string(reason))
                       .with_reason(reason)
                       .with_cid(info.cid)
                       .with_src(info.peer_ip, info.peer_port));
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const uint8_t byte : bytes) {
    hex += kDigits[byte >> 4];
    hex += kDigits[byte & 0x0f];
  }
  return hex;
}

// The PROXY v2 header `openshell run` puts in front of each connection (DESIGN.md "Network path
// inside a sandbox"): it names the process that opened the connection. Over TCP it counts only
// when its HMAC verifies under --identity-key-file; over a unix socket the socket file's
// permissions already vouch for the sender, and an HMAC is checked only if the header carries
// one and a key is configured (a sender that signs expects it checked).
asio::awaitable<bool> read_identity_header(ProxyContext& context, ConnectionInfo& info,
                                           StreamReader& reader, Transport transport) {
  const std::string& key = context.options.identity_key;
  const std::span<const uint8_t> key_bytes(reinterpret_cast<const uint8_t*>(key.data()),
                                           key.size());
  core::ProxyDecodeOptions options;
  if (transport == Transport::kTcp) options.key = key_bytes;
  const Clock::time_point deadline = Clock::now() + context.options.head_timeout;
  for (;;) {
    const std::string_view pending = reader.pending();
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(pending.data()),
                                         pending.size());
    core::ProxyDecodeResult decoded = core::decode_proxy_header(bytes, options);
    if (decoded.status == core::ProxyDecodeResult::Status::kComplete &&
        transport == Transport::kUnix && decoded.header.has_hmac && !key.empty()) {
      options.key = key_bytes;
      decoded = core::decode_proxy_header(bytes, options);
    }
    if (decoded.status == core::ProxyDecodeResult::Status::kInvalid) {
      refuse_identity_header(context, info, decoded.reason);
      co_return false;
    }
    if (decoded.status == core::ProxyDecodeResult::Status::kComplete) {
      const core::ProxyHeader& header = decoded.header;
      if (!header.exe_path || !header.pid) {
        refuse_identity_header(context, info, "header carries no process identity");
        co_return false;
      }
      if (transport == Transport::kTcp && !header.authenticated) {
        refuse_identity_header(context, info, "header carries no authenticated process identity");
        co_return false;
      }
      PeerIdentity identity;
      identity.pid = static_cast<int>(*header.pid);
      identity.exe = *header.exe_path;
      if (header.exe_sha256) identity.exe_sha256 = to_hex(*header.exe_sha256);
      identity.ancestors = header.ancestors;
      info.identity = std::move(identity);
      reader.consume(decoded.consumed);
      co_return true;
    }
    const ReadOutcome read = co_await reader.fill(deadline);
    if (read.error) {
      // Nothing sent at all is a client that went away; part of a header is worth a line.
      if (!reader.pending().empty()) {
        refuse_identity_header(context, info,
                               "truncated PROXY header (" + read.error.message() + " after " +
                                   std::to_string(reader.pending().size()) + " bytes)");
      }
      co_return false;
    }
  }
}

// Asks the in-process identity source (sandbox mode) who owns the connection, without blocking
// this I/O thread: the source answers from its own threads, the answer is posted back here and
// wakes the timer. A failure or a timeout leaves info.identity_failure set, so every decision on
// the connection denies with that reason.
asio::awaitable<void> identify_peer(ProxyContext& context, ConnectionInfo& info,
                                    const asio::ip::tcp::socket& client,
                                    const asio::ip::tcp::endpoint& peer) {
  struct Pending {
    explicit Pending(const asio::any_io_executor& executor) : timer(executor) {}
    asio::steady_timer timer;
    std::optional<Result<SourceIdentity>> result;
  };
  std::error_code error;
  const asio::ip::tcp::endpoint local = client.local_endpoint(error);
  if (error) {
    info.identity_failure = "process identity unavailable: " + error.message();
    co_return;
  }
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  auto pending = std::make_shared<Pending>(executor);
  pending->timer.expires_after(kIdentifyTimeout);
  context.options.identity_source->identify(
      peer, local, [pending, executor](Result<SourceIdentity> result) mutable {
        asio::post(executor, [pending, result = std::move(result)]() mutable {
          pending->result.emplace(std::move(result));
          pending->timer.cancel();
        });
      });
  co_await pending->timer.async_wait(kAsTuple);
  if (!pending->result) {
    info.identity_failure = "process identity unavailable: lookup timed out after " +
                            std::to_string(kIdentifyTimeout.count()) + " ms";
  } else if (!pending->result->ok()) {
    info.identity_failure = "process identity unavailable: " + pending->result->error().message;
  } else {
    SourceIdentity& found = pending->result->value();
    PeerIdentity identity;
    identity.pid = found.pid;
    identity.exe = std::move(found.exe);
    identity.exe_sha256 = std::move(found.exe_sha256);
    identity.ancestors = std::move(found.ancestors);
    identity.cmdline_paths = std::move(found.cmdline_paths);
    info.identity = std::move(identity);
  }
  if (!info.identity_failure.empty()) {
    context.log.warn("connection from {}:{} not identified: {}", info.peer_ip, info.peer_port,
                     info.identity_failure);
  }
}

}  // namespace

asio::awaitable<void> serve_connection(ProxyContext& context, asio::ip::tcp::socket client,
                                       asio::ip::tcp::endpoint peer, Transport transport) {
  ConnectionInfo info;
  info.cid = core::CorrelationId::next();
  if (transport == Transport::kUnix) {
    info.peer_ip = "unix";  // an unbound client has no address; the listener is the useful fact
  } else {
    std::error_code ignored;
    info.peer_ip = peer.address().to_string();
    info.peer_port = peer.port();
    client.set_option(asio::ip::tcp::no_delay(true), ignored);
    // First, while the client's socket surely still exists in its namespace's procfs.
    if (context.options.identity_source) co_await identify_peer(context, info, client, peer);
  }

  TcpStream stream(client);
  StreamReader reader(stream);
  if (transport == Transport::kUnix) {
    // The header is optional here: a client without one is served with no identity.
    if ((co_await reader.fill(Clock::now() + context.options.head_timeout)).error) co_return;
    if (starts_like_proxy_header(reader.pending()) &&
        !co_await read_identity_header(context, info, reader, transport)) {
      co_return;
    }
  } else if (!context.options.identity_key.empty()) {
    if (!co_await read_identity_header(context, info, reader, transport)) co_return;
  } else {
    if ((co_await reader.fill(Clock::now() + context.options.head_timeout)).error) co_return;
    if (starts_like_proxy_header(reader.pending())) {
      refuse_identity_header(context, info,
                             "this proxy expects no PROXY header (start it with "
                             "--identity-key-file to accept identities from `openshell run`)");
      co_return;
    }
  }
  std::optional<RequestHead> head = co_await read_request_head(context, reader, false);
  if (!head) co_return;
  std::string leftover(reader.pending());
  if (head->is_connect()) {
    co_await handle_connect(context, info, client, *head, std::move(leftover));
  } else {
    co_await handle_forward(context, info, client, std::move(*head), std::move(leftover));
  }
}

EngineInput::EngineInput(const ConnectionInfo& info, std::string_view host, uint16_t port)
    : input_{host, port, nullptr} {
  if (info.identity) {
    identity_ = {info.identity->exe, info.identity->ancestors, info.identity->cmdline_paths};
    input_.identity = &identity_;
  }
}

policy::ConnectDecision decide_connection(const ProxyContext& context, const ConnectionInfo& info,
                                          const policy::CompiledPolicy& policy,
                                          std::string_view host, uint16_t port) {
  const EngineInput input(info, host, port);
  policy::ConnectDecision decision = policy.decide_connect(input.get());
  if (!info.identity_failure.empty()) {
    decision.action = policy::Action::kDeny;
    decision.matched_policy = {};
    decision.reason = info.identity_failure;
    return decision;
  }
  if (decision.action == policy::Action::kAllow && !info.identity &&
      context.options.require_identity) {
    decision.action = policy::Action::kDeny;
    decision.matched_policy = {};
    decision.reason =
        "process identity is required (--require-identity) but this connection carries none";
  }
  return decision;
}

void report_denial(ProxyContext& context, const ConnectionInfo& info, core::Event event,
                   DenialEvent denial) {
  event.with_cid(info.cid).with_src(info.peer_ip, info.peer_port);
  if (info.identity) {
    core::ProcessInfo actor;
    actor.name = info.identity->exe;
    actor.pid = info.identity->pid;
    actor.sha256 = info.identity->exe_sha256;
    actor.lineage = info.identity->ancestors;
    event.with_actor(std::move(actor));
    if (denial.binary.empty() || denial.binary == "-") denial.binary = info.identity->exe;
  }
  context.log.emit(event);
  context.denials.record(denial);
}

}  // namespace openshell::proxy::detail
