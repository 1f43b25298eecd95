// Sans-I/O parts of inference routing (spec §5, issue 8): which requests to `inference.local`
// are inference API calls, which route serves them, and how the request is rewritten for the
// route's backend (URL, headers, `model`). The I/O lives in src/proxy/inference_router.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/proxy/control.hpp"
#include "openshell/proxy/http_head.hpp"
#include "openshell/proxy/response_head.hpp"

namespace openshell::proxy {

// The virtual host the sandbox reaches its inference backends through.
inline constexpr std::string_view kInferenceHost = "inference.local";

// Limits (spec §8). A chat request with a long context is a few MiB at most; past 10 MiB it is
// a mistake or an attack, and it is held in memory for the model rewrite.
inline constexpr size_t kInferenceMaxRequestBody = 10 * 1024 * 1024;
inline constexpr uint64_t kInferenceMaxRequestChunks = 4096;
// Responses: a buffered answer is held whole (so it gets an exact Content-Length); a stream is
// cut (with an SSE error event) past the same size.
inline constexpr uint64_t kInferenceMaxResponseBody = 32 * 1024 * 1024;
// A model may think for a while between tokens, but two minutes of silence is a dead stream.
inline constexpr std::chrono::seconds kInferenceChunkIdle{120};
inline constexpr std::chrono::seconds kInferenceConnectTimeout{30};
// Whole-response bound for buffered answers and for the wait on any response head.
inline constexpr std::chrono::seconds kInferenceRouteTimeout{60};
// JSON nested deeper than this is refused instead of rewritten (bounds the rewriter's stack).
inline constexpr size_t kInferenceMaxJsonDepth = 128;

// Whether `host` names the virtual host (case-insensitive, a trailing dot ignored).
bool is_inference_host(std::string_view host);

enum class InferenceKind {
  kChatCompletion,
  kCompletion,
  kResponses,
  kEmbeddings,
  kMessages,
  kModelsList,
  kModelsGet,
};

struct InferencePattern {
  std::string_view protocol;  // spec §5.2 protocol id, e.g. "openai_chat_completions"
  InferenceKind kind = InferenceKind::kChatCompletion;
};

// Spec §5.2: method case-insensitive, path exact (the query is ignored). nullopt: not an
// inference API call (403).
std::optional<InferencePattern> classify_inference_request(std::string_view method,
                                                           std::string_view target);

// How a route authenticates to its backend (spec §5.3 provider profiles).
enum class InferenceAuth { kBearer, kAnthropic };

// A route's protocol list entry: a family ("openai", "anthropic") or a spec protocol id.
bool is_known_inference_protocol(std::string_view protocol);
// Whether a route listing `protocols` serves `protocol` (a spec protocol id).
bool route_serves(const std::vector<std::string>& protocols, std::string_view protocol);
// The auth style of a route: by provider_type when set, else by its protocols.
InferenceAuth route_auth(const InferenceRoute& route);

// First route that serves `protocol` (spec §5.3 selection), or nullptr.
const InferenceRoute* select_route(std::span<const InferenceRoute> routes,
                                   std::string_view protocol);

// A route's base URL, split.
struct BackendUrl {
  bool tls = false;
  std::string host;  // lowercased, IPv6 without brackets
  uint16_t port = 0;
  bool ipv6 = false;
  bool explicit_port = false;
  std::string base_path;  // without a trailing '/'; empty for the root

  std::string host_header() const;
};

// `http://` or `https://` URL with no query, fragment or userinfo.
Result<BackendUrl> parse_backend_url(std::string_view url);

// Spec §5.3: base path + request target, dropping the request's leading `/v1` when the base
// path ends with `/v1` or starts with `/v1/`. The query is kept.
std::string backend_target(const BackendUrl& url, std::string_view request_target);

// Spec §5.3 header rewrite: keep content-type, accept, accept-encoding, user-agent and the
// profile's passthrough headers; drop everything else (client credentials, hop-by-hop, Host,
// Content-Length); add the route's key per its auth style and the profile's default headers.
// The caller adds Host, Content-Length and Connection.
std::vector<HeaderField> rewrite_inference_headers(const std::vector<HeaderField>& headers,
                                                   const InferenceRoute& route);

enum class ModelRewrite {
  kRewritten,  // `body` now carries the route's model
  kUntouched,  // not a JSON object (or no model to set): sent as it came
  kTooDeep,    // JSON nested past kInferenceMaxJsonDepth: refused (400)
};

// Sets the top-level "model" of a JSON object body to `model` (spec §5.3); `previous` receives
// the model the client asked for, when the body named one.
ModelRewrite rewrite_model(std::string& body, std::string_view model, std::string* previous);

// The model a JSON body names (for events), or empty.
std::string requested_model(std::string_view body);

// --- Responses the router writes itself (JSON, Connection: close) -----------------------------
// {"error": message} with `status`; messages never carry the upstream URL or key.
std::string inference_error_response(int status, std::string_view message);
// 503 {"error":"cluster inference is not configured","hint":...}: no route at all.
std::string inference_not_configured_response();
// 413 for a request body over kInferenceMaxRequestBody.
std::string inference_payload_too_large_response();

// The upstream response head re-serialised for the client: hop-by-hop headers, Content-Length
// and Transfer-Encoding dropped, then `Transfer-Encoding: chunked` (streaming) or
// `Content-Length: length`, then `Connection: keep-alive|close`.
std::string inference_response_head(const ResponseHead& head, bool chunked, uint64_t length,
                                    bool keep_alive);

// Spec §5.3: the SSE event appended to a truncated stream, as one chunk's payload.
std::string inference_stream_error_event(std::string_view reason);

// Whether an upstream response is relayed as a stream (chunk by chunk as it arrives) rather than
// buffered: SSE, or a body without a known length.
bool is_streaming_response(const ResponseHead& head, BodyFraming framing);

}  // namespace openshell::proxy
