// Inference routing without I/O: request classification (spec §5.2), route selection, backend
// URL and header rewrite, the `model` rewrite and the router's own responses (spec §5.3).
#include "openshell/proxy/inference_api.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <nlohmann/json.hpp>

#include "openshell/policy/host_pattern.hpp"

namespace openshell::proxy {

namespace {

using Json = nlohmann::ordered_json;

struct PathPattern {
  std::string_view method;
  std::string_view path;
  InferencePattern pattern;
};

constexpr std::array<PathPattern, 6> kExactPatterns{{
    {"POST", "/v1/chat/completions", {"openai_chat_completions", InferenceKind::kChatCompletion}},
    {"POST", "/v1/completions", {"openai_completions", InferenceKind::kCompletion}},
    {"POST", "/v1/responses", {"openai_responses", InferenceKind::kResponses}},
    {"POST", "/v1/embeddings", {"openai_embeddings", InferenceKind::kEmbeddings}},
    {"POST", "/v1/messages", {"anthropic_messages", InferenceKind::kMessages}},
    {"GET", "/v1/models", {"model_discovery", InferenceKind::kModelsList}},
}};

constexpr std::array<std::string_view, 5> kOpenAiProtocols{"openai_chat_completions",
                                                           "openai_completions", "openai_responses",
                                                           "openai_embeddings", "model_discovery"};
constexpr std::array<std::string_view, 2> kAnthropicProtocols{"anthropic_messages",
                                                              "model_discovery"};

bool in_family(std::string_view family, std::string_view protocol) {
  if (family == "openai") {
    return std::find(kOpenAiProtocols.begin(), kOpenAiProtocols.end(), protocol) !=
           kOpenAiProtocols.end();
  }
  if (family == "anthropic") {
    return std::find(kAnthropicProtocols.begin(), kAnthropicProtocols.end(), protocol) !=
           kAnthropicProtocols.end();
  }
  return false;
}

bool is_anthropic_entry(std::string_view protocol) {
  return protocol == "anthropic" || protocol == "anthropic_messages";
}

bool is_openai_entry(std::string_view protocol) {
  return protocol == "openai" || protocol.starts_with("openai_");
}

// Request headers a backend may see (spec §5.3), beside the profile's passthrough list.
constexpr std::array<std::string_view, 4> kKeptHeaders{"content-type", "accept", "accept-encoding",
                                                       "user-agent"};
constexpr std::array<std::string_view, 2> kOpenAiPassthrough{"openai-organization", "x-model-id"};
constexpr std::array<std::string_view, 2> kAnthropicPassthrough{"anthropic-version",
                                                                "anthropic-beta"};
constexpr std::string_view kAnthropicVersion = "2023-06-01";

template <size_t N>
bool listed(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(),
                     [&](std::string_view n) { return ascii_iequals(n, name); });
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 413:
      return "Payload Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Error";
  }
}

std::string json_response(int status, const Json& body) {
  const std::string text = body.dump(-1, ' ', true, Json::error_handler_t::replace);
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason_phrase(status)) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(text.size()) +
         "\r\nConnection: close\r\n\r\n" + text;
}

// Deepest array/object nesting of `text` read as JSON (strings skipped); stops counting once
// past `limit`.
size_t json_depth(std::string_view text, size_t limit) {
  size_t depth = 0;
  size_t deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

bool looks_like_object(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && text[first] == '{';
}

// A body parsed as a JSON object, or nullopt (not JSON, not an object, or too deep).
std::optional<Json> parse_object(std::string_view body) {
  if (!looks_like_object(body) || json_depth(body, kInferenceMaxJsonDepth) > kInferenceMaxJsonDepth)
    return std::nullopt;
  try {
    Json json = Json::parse(body, nullptr, false);
    if (json.is_discarded() || !json.is_object()) return std::nullopt;
    return json;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

}  // namespace

bool is_inference_host(std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  return ascii_iequals(host, kInferenceHost);
}

std::optional<InferencePattern> classify_inference_request(std::string_view method,
                                                           std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  for (const PathPattern& p : kExactPatterns) {
    if (ascii_iequals(method, p.method) && path == p.path) return p.pattern;
  }
  if (ascii_iequals(method, "GET") && path.starts_with("/v1/models/") &&
      path.size() > std::string_view("/v1/models/").size()) {
    return InferencePattern{"model_discovery", InferenceKind::kModelsGet};
  }
  return std::nullopt;
}

bool is_known_inference_protocol(std::string_view protocol) {
  return protocol == "openai" || protocol == "anthropic" || in_family("openai", protocol) ||
         in_family("anthropic", protocol);
}

bool route_serves(const std::vector<std::string>& protocols, std::string_view protocol) {
  return std::any_of(protocols.begin(), protocols.end(), [&](const std::string& entry) {
    return entry == protocol || in_family(entry, protocol);
  });
}

InferenceAuth route_auth(const InferenceRoute& route) {
  if (!route.provider_type.empty()) {
    return route.provider_type == "anthropic" ? InferenceAuth::kAnthropic : InferenceAuth::kBearer;
  }
  for (const std::string& protocol : route.protocols) {
    if (is_anthropic_entry(protocol)) return InferenceAuth::kAnthropic;
    if (is_openai_entry(protocol)) return InferenceAuth::kBearer;
  }
  return InferenceAuth::kBearer;
}

const InferenceRoute* select_route(std::span<const InferenceRoute> routes,
                                   std::string_view protocol) {
  for (const InferenceRoute& route : routes) {
    if (route.name == "sandbox-system") continue;  // spec §5.3: reserved, never exposed
    if (route_serves(route.protocols, protocol)) return &route;
  }
  return nullptr;
}

std::string BackendUrl::host_header() const {
  const uint16_t default_port = tls ? 443 : 80;
  return format_authority(host, port, ipv6, port != default_port);
}

Result<BackendUrl> parse_backend_url(std::string_view url) {
  BackendUrl out;
  const size_t separator = url.find("://");
  const std::string scheme = separator == std::string_view::npos
                                 ? std::string()
                                 : policy::ascii_lowercase(url.substr(0, separator));
  if (scheme == "https") {
    out.tls = true;
  } else if (scheme != "http") {
    return make_error(Errc::kInvalidArgument, "base URL must start with http:// or https://");
  }
  std::string_view rest = url.substr(scheme.size() + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  std::string_view path =
      authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    return make_error(Errc::kInvalidArgument, "base URL needs a host (and no user info)");
  }
  auto parsed = parse_host_header(authority, out.tls ? 443 : 80);
  if (!parsed.ok() || parsed->host.empty() || parsed->port == 0) {
    return make_error(Errc::kInvalidArgument, "base URL has an invalid host or port");
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    return make_error(Errc::kInvalidArgument, "base URL must not carry a query or fragment");
  }
  for (const char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return make_error(Errc::kInvalidArgument, "base URL path has a space or control byte");
    }
  }
  while (path.ends_with('/'))
    path.remove_suffix(1);
  out.host = parsed->host;
  out.port = parsed->port;
  out.ipv6 = parsed->ipv6;
  out.explicit_port = parsed->explicit_port;
  out.base_path = std::string(path);
  return out;
}

std::string backend_target(const BackendUrl& url, std::string_view request_target) {
  const std::string_view base = url.base_path;
  const bool base_is_v1 = base.ends_with("/v1") || base.starts_with("/v1/");
  std::string_view target = request_target;
  if (base_is_v1 && target.starts_with("/v1") &&
      (target.size() == 3 || target[3] == '/' || target[3] == '?')) {
    target.remove_prefix(3);
  }
  std::string out(base);
  out += target;
  if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  return out;
}

std::vector<HeaderField> rewrite_inference_headers(const std::vector<HeaderField>& headers,
                                                   const InferenceRoute& route) {
  const InferenceAuth auth = route_auth(route);
  std::vector<HeaderField> out;
  bool has_version = false;
  for (const HeaderField& field : headers) {
    const bool passthrough = auth == InferenceAuth::kAnthropic
                                 ? listed(kAnthropicPassthrough, field.name)
                                 : listed(kOpenAiPassthrough, field.name);
    if (!listed(kKeptHeaders, field.name) && !passthrough) continue;
    if (ascii_iequals(field.name, "anthropic-version")) has_version = true;
    out.push_back(field);
  }
  if (!route.api_key.empty()) {
    if (auth == InferenceAuth::kAnthropic) {
      out.push_back({"x-api-key", route.api_key});
    } else {
      out.push_back({"Authorization", "Bearer " + route.api_key});
    }
  }
  if (auth == InferenceAuth::kAnthropic && !has_version) {
    out.push_back({"anthropic-version", std::string(kAnthropicVersion)});
  }
  return out;
}

ModelRewrite rewrite_model(std::string& body, std::string_view model, std::string* previous) {
  if (!looks_like_object(body)) return ModelRewrite::kUntouched;
  if (json_depth(body, kInferenceMaxJsonDepth) > kInferenceMaxJsonDepth) {
    return ModelRewrite::kTooDeep;
  }
  std::optional<Json> json = parse_object(body);
  if (!json) return ModelRewrite::kUntouched;
  if (previous != nullptr) {
    const auto it = json->find("model");
    if (it != json->end() && it->is_string()) *previous = it->get<std::string>();
  }
  if (model.empty()) return ModelRewrite::kUntouched;
  (*json)["model"] = std::string(model);
  body = json->dump(-1, ' ', false, Json::error_handler_t::replace);
  return ModelRewrite::kRewritten;
}

std::string requested_model(std::string_view body) {
  const std::optional<Json> json = parse_object(body);
  if (!json) return {};
  const auto it = json->find("model");
  return it != json->end() && it->is_string() ? it->get<std::string>() : std::string{};
}

std::string inference_error_response(int status, std::string_view message) {
  return json_response(status, Json{{"error", std::string(message)}});
}

std::string inference_not_configured_response() {
  return json_response(503, Json{{"error", "cluster inference is not configured"},
                                 {"hint", "configure routes: openshell ctl set-routes FILE"}});
}

std::string inference_payload_too_large_response() {
  return json_response(413, Json{{"error", "Payload Too Large"}});
}

std::string inference_response_head(const ResponseHead& head, bool chunked, uint64_t length,
                                    bool keep_alive) {
  // Fields the Connection header nominates are hop-by-hop too.
  std::vector<std::string> nominated;
  for (const HeaderField& field : head.headers) {
    if (!ascii_iequals(field.name, "connection")) continue;
    std::string_view value = field.value;
    while (!value.empty()) {
      const size_t comma = value.find(',');
      std::string_view token = value.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
        token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      if (!token.empty()) nominated.emplace_back(token);
      value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    }
  }
  static constexpr std::array<std::string_view, 10> kDropped{"connection",
                                                             "keep-alive",
                                                             "proxy-authenticate",
                                                             "proxy-authorization",
                                                             "proxy-connection",
                                                             "te",
                                                             "trailer",
                                                             "transfer-encoding",
                                                             "upgrade",
                                                             "content-length"};
  std::string out = "HTTP/1.1 " + std::to_string(head.status) + " " + head.reason + "\r\n";
  for (const HeaderField& field : head.headers) {
    if (listed(kDropped, field.name)) continue;
    if (std::any_of(nominated.begin(), nominated.end(),
                    [&](const std::string& n) { return ascii_iequals(n, field.name); })) {
      continue;
    }
    out += field.name + ": " + field.value + "\r\n";
  }
  out += chunked ? std::string("Transfer-Encoding: chunked\r\n")
                 : "Content-Length: " + std::to_string(length) + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return out;
}

std::string inference_stream_error_event(std::string_view reason) {
  const Json event{{"error", {{"message", std::string(reason)}, {"type", "proxy_stream_error"}}}};
  return "data: " + event.dump(-1, ' ', true, Json::error_handler_t::replace) + "\n\n";
}

bool is_streaming_response(const ResponseHead& head, BodyFraming framing) {
  if (framing == BodyFraming::kChunked || framing == BodyFraming::kUntilClose) return true;
  const HeaderField* type = head.find("content-type");
  return type != nullptr && policy::ascii_lowercase(type->value).starts_with("text/event-stream");
}

}  // namespace openshell::proxy
