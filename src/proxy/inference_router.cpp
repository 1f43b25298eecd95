// inference.local: classify each request, read its body (bounded), pick the route, rewrite
// headers and `model`, call the backend over http or verified https, and relay the answer:
// streams chunk by chunk as they arrive, buffered answers with an exact Content-Length.
#include "inference_router.hpp"

#include <asio/this_coro.hpp>
#include <cstdio>
#include <memory>
#include <optional>

#include "openshell/core/events.hpp"
#include "openshell/proxy/chunked.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/inference_api.hpp"
#include "openshell/proxy/inference_routes.hpp"
#include "openshell/proxy/response_head.hpp"
#include "openshell/proxy/tls_interception.hpp"
#include "tls_stream.hpp"

namespace openshell::proxy::detail {

namespace {

// The router's own error answers (spec §5.3); none names the backend.
constexpr std::string_view kUnavailable = "inference service unavailable";
constexpr std::string_view kServiceError = "inference service error";

struct Request {
  Request(ProxyContext& c, const ConnectionInfo& i, StreamReader& from, const RequestHead& h,
          std::string_view t, bool over_tls)
      : context(c), info(i), client(from), head(h), target(t), tls(over_tls) {}

  ProxyContext& context;
  const ConnectionInfo& info;
  StreamReader& client;
  const RequestHead& head;
  std::string_view target;
  bool tls;
  Clock::time_point started = Clock::now();
  // For the event: what was asked and what became of it.
  std::string protocol;
  std::string route;
  std::string model;
  int status = 0;
  uint64_t request_bytes = 0;
  uint64_t response_bytes = 0;
  std::string failure;
  bool logged = false;
};

core::Event request_event(const Request& r) {
  const std::string path(r.target.substr(0, r.target.find('?')));
  core::Event event = core::Event::http_activity(core::HttpActivity::kOther);
  event
      .with_message("INFERENCE " + r.head.method + " " + std::string(kInferenceHost) + path +
                    (r.route.empty() ? "" : " -> route " + r.route))
      .with_http(r.head.method, r.tls ? "https" : "http", kInferenceHost, r.tls ? 443 : 80, path)
      .with_dst(kInferenceHost, r.tls ? 443 : 80)
      .with_http_status(r.status)
      .with_traffic(r.response_bytes, r.request_bytes)
      .with_duration_ms(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.started).count())
      .with_cid(r.info.cid)
      .with_src(r.info.peer_ip, r.info.peer_port);
  if (!r.protocol.empty())
    event.with_protocol(r.protocol).with_field("inference_protocol", r.protocol);
  if (!r.route.empty()) event.with_rule(r.route, "inference_route");
  if (!r.model.empty()) event.with_field("model", r.model);
  if (!r.failure.empty()) event.with_reason(r.failure);
  if (r.status >= 200 && r.status < 400) {
    event.allowed();
  } else if (r.status == 403 || r.status == 413 || r.status == 400) {
    event.denied();
  }
  return event;
}

// Writes a complete answer of the router's own; the connection ends with it.
asio::awaitable<bool> refuse(Request& r, int status, std::string_view response,
                             std::string_view why) {
  r.status = status;
  if (r.failure.empty()) r.failure = std::string(why);
  r.logged = true;
  (void)co_await write_all(r.client.stream(), response, r.context.options.head_timeout);
  r.context.log.emit(request_event(r));
  co_return false;
}

// Collects decoded chunk data, refusing past the request limit.
class BoundedSink final : public ChunkDataSink {
 public:
  BoundedSink(std::string& out, size_t limit) : out_(out), limit_(limit) {}
  void on_chunk_data(std::span<const char> data) override {
    if (over_ || out_.size() + data.size() > limit_) {
      over_ = true;
      return;
    }
    out_.append(data.data(), data.size());
  }
  bool over() const { return over_; }

 private:
  std::string& out_;
  size_t limit_;
  bool over_ = false;
};

enum class BodyRead { kOk, kTooLarge, kMalformed, kFailed };

asio::awaitable<BodyRead> read_request_body(Request& r, std::string& body) {
  const Clock::duration idle = r.context.options.idle_timeout;
  if (r.head.chunked) {
    ChunkedFramer framer;
    BoundedSink sink(body, kInferenceMaxRequestBody);
    for (;;) {
      const std::string_view pending = r.client.pending();
      if (!pending.empty()) {
        const BodyProgress progress = framer.feed(pending, &sink);
        if (progress.status == BodyStatus::kError) co_return BodyRead::kMalformed;
        r.client.consume(progress.consumed);
        if (sink.over() || framer.chunk_count() > kInferenceMaxRequestChunks) {
          co_return BodyRead::kTooLarge;
        }
        if (progress.status == BodyStatus::kComplete) co_return BodyRead::kOk;
      }
      if ((co_await r.client.fill(Clock::now() + idle)).error) co_return BodyRead::kFailed;
    }
  }
  const uint64_t length = r.head.content_length.value_or(0);
  if (length > kInferenceMaxRequestBody) co_return BodyRead::kTooLarge;
  while (r.client.pending().size() < length) {
    if ((co_await r.client.fill(Clock::now() + idle)).error) co_return BodyRead::kFailed;
  }
  body.assign(r.client.pending().substr(0, static_cast<size_t>(length)));
  r.client.consume(static_cast<size_t>(length));
  co_return BodyRead::kOk;
}

// The backend connection: the socket, and the plain or TLS stream over it.
struct Backend {
  // On the heap: the stream refers to it, and a Backend is moved when returned.
  std::unique_ptr<asio::ip::tcp::socket> socket;
  std::unique_ptr<ByteStream> stream;
  bool unavailable = false;  // resolve/connect failed or timed out (503), else TLS (502)
  std::string failure;
};

asio::awaitable<Backend> connect_backend(ProxyContext& context, const BackendUrl& url) {
  Backend backend;
  // Operator-configured: no policy, no SSRF guard (a model server on loopback is the usual case).
  ResolveResult resolved = co_await context.resolver.resolve(url.host, url.port);
  if (!resolved.ok()) {
    backend.unavailable = true;
    backend.failure = "resolve: " + resolved.error().message;
    co_return backend;
  }
  const auto endpoints = to_endpoints(resolved.value(), url.port);
  DialResult dialed = co_await dial(
      co_await asio::this_coro::executor, endpoints,
      std::chrono::duration_cast<std::chrono::milliseconds>(kInferenceConnectTimeout));
  if (!dialed.ok()) {
    backend.unavailable = true;
    backend.failure = dialed.describe();
    co_return backend;
  }
  backend.socket = std::make_unique<asio::ip::tcp::socket>(std::move(*dialed.socket));
  if (!url.tls) {
    backend.stream = std::make_unique<TcpStream>(*backend.socket);
    co_return backend;
  }
  if (context.tls == nullptr) {
    backend.failure = "https backend but the proxy has no TLS configuration";
    co_return backend;
  }
  auto tls = std::make_unique<TlsStream>(*backend.socket, context.tls->upstream_config());
  // mbedTLS checks the name against dNSName/CN only: https backends are named, not IP literals.
  (void)tls->set_hostname(url.host);
  const std::string origin = url.host + ":" + std::to_string(url.port);
  context.tls->resume_session(origin, tls->ssl());
  if (const std::error_code error =
          co_await tls->handshake(Clock::now() + kInferenceConnectTimeout)) {
    backend.failure = "TLS to backend failed: " + error.message();
    co_return backend;
  }
  context.tls->remember_session(origin, tls->ssl());
  backend.stream = std::move(tls);
  co_return backend;
}

// Turns a response body in any framing into its payload, piece by piece.
class BodyDecoder {
 public:
  BodyDecoder(BodyFraming framing, uint64_t length) : framing_(framing), fixed_(length) {}

  // Takes what `pending` holds of the body, appends its payload to `out`; returns bytes used.
  size_t feed(std::string_view pending, std::string& out) {
    switch (framing_) {
      case BodyFraming::kNone:
        done_ = true;
        return 0;
      case BodyFraming::kLength: {
        const BodyProgress progress = fixed_.feed(pending);
        out.append(pending.substr(0, progress.consumed));
        done_ = fixed_.done();
        return progress.consumed;
      }
      case BodyFraming::kChunked: {
        struct Append final : ChunkDataSink {
          std::string& out;
          explicit Append(std::string& o) : out(o) {}
          void on_chunk_data(std::span<const char> data) override {
            out.append(data.data(), data.size());
          }
        } sink(out);
        const BodyProgress progress = chunked_.feed(pending, &sink);
        if (progress.status == BodyStatus::kError) {
          malformed_ = true;
          return 0;
        }
        done_ = progress.status == BodyStatus::kComplete;
        return progress.consumed;
      }
      case BodyFraming::kUntilClose:
        out.append(pending);
        return pending.size();
    }
    return 0;
  }
  // The upstream closed: the end of a close-delimited body, a truncation of any other.
  void on_eof() {
    if (framing_ == BodyFraming::kUntilClose) done_ = true;
  }
  bool done() const { return done_; }
  bool malformed() const { return malformed_; }

 private:
  BodyFraming framing_;
  FixedLengthBody fixed_;
  ChunkedFramer chunked_;
  bool done_ = false;
  bool malformed_ = false;
};

struct Piece {
  std::string data;
  bool done = false;
  std::string error;  // why the body stopped early; empty when it did not
  bool timed_out = false;
};

// The next payload bytes the upstream sends (at least one, unless the body ended or failed).
asio::awaitable<Piece> next_piece(StreamReader& upstream, BodyDecoder& decoder,
                                  Clock::time_point deadline) {
  Piece piece;
  for (;;) {
    if (!upstream.pending().empty()) {
      upstream.consume(decoder.feed(upstream.pending(), piece.data));
      if (decoder.malformed()) {
        piece.error = "malformed response body framing";
        co_return piece;
      }
    }
    piece.done = decoder.done();
    if (piece.done || !piece.data.empty()) co_return piece;
    const ReadOutcome read = co_await upstream.fill(deadline);
    if (read.error == asio::error::eof) {
      decoder.on_eof();
      piece.done = decoder.done();
      if (!piece.done) piece.error = "upstream closed mid-body";
      co_return piece;
    }
    if (read.error) {
      piece.timed_out = read.error == std::make_error_code(std::errc::timed_out);
      piece.error = read.error.message();
      co_return piece;
    }
  }
}

std::string chunk(std::string_view data) {
  char size[20];
  const int n = std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out(size, static_cast<size_t>(n));
  out.append(data);
  out += "\r\n";
  return out;
}

// Relays a streaming answer: each piece is written to the client as soon as it arrives.
asio::awaitable<bool> relay_stream(Request& r, StreamReader& upstream, const ResponseHead& head,
                                   BodyFraming framing) {
  ByteStream& client = r.client.stream();
  const Clock::duration write_idle = r.context.options.idle_timeout;
  const bool chunked_client = r.head.version == HttpVersion::kHttp11;
  bool keep_alive = chunked_client && r.head.keep_alive && !r.context.draining;
  if (co_await write_all(client, inference_response_head(head, chunked_client, 0, keep_alive),
                         write_idle)) {
    r.failure = "client write failed";
    co_return false;
  }
  BodyDecoder decoder(framing, head.content_length.value_or(0));
  std::string truncated;
  for (;;) {
    Piece piece = co_await next_piece(upstream, decoder, Clock::now() + kInferenceChunkIdle);
    if (!piece.data.empty()) {
      if (r.response_bytes + piece.data.size() > kInferenceMaxResponseBody) {
        truncated = "response truncated: exceeded maximum streaming body size";
        break;
      }
      r.response_bytes += piece.data.size();
      const std::string out = chunked_client ? chunk(piece.data) : std::move(piece.data);
      if (co_await write_all(client, out, write_idle)) {
        r.failure = "client write failed";
        co_return false;
      }
    }
    if (piece.done) break;
    if (!piece.error.empty()) {
      truncated = piece.timed_out ? "response truncated: chunk idle timeout exceeded"
                                  : "response truncated: upstream read error";
      r.failure = piece.error;
      break;
    }
  }
  std::string tail;
  if (!truncated.empty()) {
    if (r.failure.empty()) r.failure = truncated;
    keep_alive = false;
    const std::string event = inference_stream_error_event(truncated);
    tail = chunked_client ? chunk(event) : event;
  }
  if (chunked_client) tail += "0\r\n\r\n";
  if (co_await write_all(client, tail, write_idle)) co_return false;
  co_return keep_alive;
}

// Relays a buffered answer whole, with its exact length.
asio::awaitable<bool> relay_buffered(Request& r, StreamReader& upstream, const ResponseHead& head,
                                     BodyFraming framing) {
  const Clock::time_point deadline = r.started + kInferenceRouteTimeout;
  BodyDecoder decoder(framing, head.content_length.value_or(0));
  std::string body;
  for (;;) {
    Piece piece = co_await next_piece(upstream, decoder, deadline);
    body += piece.data;
    if (body.size() > kInferenceMaxResponseBody) {
      co_return co_await refuse(r, 502, inference_error_response(502, kServiceError),
                                "buffered response exceeds 32 MiB");
    }
    if (piece.done) break;
    if (!piece.error.empty()) {
      const int status = piece.timed_out ? 503 : 502;
      const std::string response =
          inference_error_response(status, piece.timed_out ? kUnavailable : kServiceError);
      co_return co_await refuse(r, status, response, "response body: " + piece.error);
    }
  }
  const bool keep_alive = r.head.keep_alive && !r.context.draining;
  r.response_bytes = body.size();
  std::string out = inference_response_head(head, false, body.size(), keep_alive);
  out += body;
  if (co_await write_all(r.client.stream(), out, r.context.options.idle_timeout)) {
    r.failure = "client write failed";
    co_return false;
  }
  co_return keep_alive;
}

asio::awaitable<bool> route_request(Request& r, const InferenceRoute& route, std::string body) {
  auto url = parse_backend_url(route.endpoint);
  if (!url.ok()) {
    co_return co_await refuse(r, 502, inference_error_response(502, kServiceError),
                              "route base URL: " + url.error().message);
  }
  const bool post = ascii_iequals(r.head.method, "POST");
  if (post || !body.empty()) {
    const ModelRewrite rewrite = rewrite_model(body, route.model, &r.model);
    if (rewrite == ModelRewrite::kTooDeep) {
      co_return co_await refuse(
          r, 400, inference_error_response(400, "request body JSON is nested too deeply"),
          "request JSON too deep");
    }
    if (rewrite == ModelRewrite::kRewritten) r.model = route.model;
  }
  r.request_bytes = body.size();

  std::string request = r.head.method + " " + backend_target(*url, r.target) + " HTTP/1.1\r\n";
  request += "Host: " + url->host_header() + "\r\n";
  for (const HeaderField& field : rewrite_inference_headers(r.head.headers, route)) {
    request += field.name + ": " + field.value + "\r\n";
  }
  if (!body.empty() || post) {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "Connection: close\r\n\r\n";
  request += body;
  wipe_secret(body);

  Backend backend = co_await connect_backend(r.context, *url);
  if (!backend.stream) {
    wipe_secret(request);
    const int status = backend.unavailable ? 503 : 502;
    co_return co_await refuse(
        r, status,
        inference_error_response(status, backend.unavailable ? kUnavailable : kServiceError),
        backend.failure);
  }
  const std::error_code sent = co_await write_all(*backend.stream, request, kInferenceRouteTimeout);
  wipe_secret(request);  // it carries the key
  if (sent) {
    co_return co_await refuse(r, 502, inference_error_response(502, kServiceError),
                              "write to backend failed: " + sent.message());
  }

  StreamReader upstream(*backend.stream);
  const Clock::time_point head_deadline = Clock::now() + kInferenceRouteTimeout;
  ResponseHeadResult response;
  for (;;) {
    response = parse_response_head(upstream.pending());
    if (response.status == ResponseParse::kComplete) {
      if (response.head.status >= 100 && response.head.status < 200) {
        upstream.consume(response.head.head_size);  // interim answers stay between us
        continue;
      }
      break;
    }
    if (response.status == ResponseParse::kError) break;
    const ReadOutcome read = co_await upstream.fill(head_deadline);
    if (read.error) {
      const bool timed_out = read.error == std::make_error_code(std::errc::timed_out);
      const int status = timed_out ? 503 : 502;
      const std::string answer =
          inference_error_response(status, timed_out ? kUnavailable : kServiceError);
      co_return co_await refuse(r, status, answer,
                                "no response head from backend: " + read.error.message());
    }
  }
  if (response.status != ResponseParse::kComplete) {
    co_return co_await refuse(r, 502, inference_error_response(502, kServiceError),
                              "bad response from backend: " + response.error);
  }
  upstream.consume(response.head.head_size);
  r.status = response.head.status;
  const BodyFraming framing = response_body_framing(response.head, r.head.method);
  bool keep_alive = false;
  if (is_streaming_response(response.head, framing)) {
    keep_alive = co_await relay_stream(r, upstream, response.head, framing);
  } else {
    keep_alive = co_await relay_buffered(r, upstream, response.head, framing);
  }
  if (!r.logged) r.context.log.emit(request_event(r));
  backend.stream->close();
  co_return keep_alive;
}

}  // namespace

asio::awaitable<bool> serve_inference_request(ProxyContext& context, const ConnectionInfo& info,
                                              StreamReader& client, const RequestHead& head,
                                              std::string_view target, bool tls) {
  Request r{context, info, client, head, target, tls};
  const std::optional<InferencePattern> pattern = classify_inference_request(head.method, target);
  if (!pattern) {
    co_return co_await refuse(r, 403, inference_not_allowed_response(),
                              "not an inference API request");
  }
  r.protocol = std::string(pattern->protocol);

  // The limit is known before the body is read: refuse without waiting for it.
  if (head.content_length.value_or(0) > kInferenceMaxRequestBody) {
    co_return co_await refuse(r, 413, inference_payload_too_large_response(),
                              "request body exceeds 10 MiB");
  }
  const HeaderField* expect = head.find("expect");
  if (expect != nullptr && ascii_iequals(expect->value, "100-continue") && head.has_body()) {
    if (co_await write_all(client.stream(), "HTTP/1.1 100 Continue\r\n\r\n",
                           context.options.head_timeout)) {
      co_return false;
    }
  }
  std::string body;
  switch (co_await read_request_body(r, body)) {
    case BodyRead::kOk:
      break;
    case BodyRead::kTooLarge:
      co_return co_await refuse(r, 413, inference_payload_too_large_response(),
                                "request body exceeds 10 MiB");
    case BodyRead::kMalformed:
      co_return co_await refuse(r, 400, bad_request_response(), "malformed chunked body");
    case BodyRead::kFailed:
      r.failure = "request body ended early";
      context.log.emit(request_event(r));
      co_return false;
  }

  const std::shared_ptr<const InferenceRoutes> routes =
      context.inference != nullptr ? context.inference->snapshot() : nullptr;
  if (routes == nullptr || routes->empty()) {
    co_return co_await refuse(r, 503, inference_not_configured_response(),
                              "no inference routes configured");
  }
  const InferenceRoute* route = select_route(*routes, pattern->protocol);
  if (route == nullptr) {
    co_return co_await refuse(
        r, 400, inference_error_response(400, "no compatible inference route available"),
        "no route serves " + r.protocol);
  }
  r.route = route->name;
  if (route->model.empty()) r.model = requested_model(body);  // else the rewrite reports it
  co_return co_await route_request(r, *route, std::move(body));
}

asio::awaitable<void> handle_inference_connect(ProxyContext& context, const ConnectionInfo& info,
                                               asio::ip::tcp::socket& client,
                                               std::string leftover) {
  if (co_await write_all(client, connection_established_response(), context.options.head_timeout)) {
    co_return;
  }
  context.log.emit(
      core::Event::network(core::NetworkActivity::kOpen)
          .allowed()
          .with_message("CONNECT " + std::string(kInferenceHost) + " (inference routing)")
          .with_dst(kInferenceHost, 443)
          .with_cid(info.cid)
          .with_src(info.peer_ip, info.peer_port));
  TcpStream plain(client);
  StreamReader sniffer(plain);
  sniffer.prepend(leftover);
  // The client speaks first in either case; its first byte says TLS or plaintext HTTP.
  while (sniffer.pending().empty()) {
    if ((co_await sniffer.fill(Clock::now() + context.options.head_timeout)).error) co_return;
  }
  constexpr unsigned char kTlsHandshakeRecord = 0x16;
  const bool tls = static_cast<unsigned char>(sniffer.pending().front()) == kTlsHandshakeRecord;
  std::unique_ptr<TlsStream> tls_stream;
  ByteStream* stream = &plain;
  std::string early;
  if (tls) {
    if (context.tls == nullptr) co_return;  // no CA: nothing to terminate with
    auto leaf = co_await context.tls->leaves().get(std::string(kInferenceHost));
    if (!leaf.ok()) {
      context.log.emit(
          core::Event::network(core::NetworkActivity::kFail)
              .with_message("TLS leaf for inference.local failed: " + leaf.error().message)
              .with_cid(info.cid));
      co_return;
    }
    tls_stream = std::make_unique<TlsStream>(client, (*leaf)->server_config);
    tls_stream->feed_received(sniffer.pending());
    if (const std::error_code error =
            co_await tls_stream->handshake(Clock::now() + context.options.head_timeout)) {
      context.log.emit(
          core::Event::network(core::NetworkActivity::kFail)
              .with_message("TLS from client failed for inference.local: " + error.message())
              .with_cid(info.cid)
              .with_src(info.peer_ip, info.peer_port));
      co_return;
    }
    stream = tls_stream.get();
  } else {
    early = std::string(sniffer.pending());
  }
  StreamReader reader(*stream);
  reader.prepend(early);
  for (;;) {
    std::optional<RequestHead> head =
        co_await read_request_head(context, reader, true, kTunnelRequestHeadLimit);
    if (!head) break;
    if (!co_await serve_inference_request(context, info, reader, *head, head->target, tls)) break;
  }
  co_await stream->shutdown_send();
  stream->close();
}

}  // namespace openshell::proxy::detail
