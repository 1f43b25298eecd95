// Inference routing without I/O (spec §5.2, §5.3, issue 8): classification, route selection,
// backend URL and the /v1 rule, header rewrite and key injection, the `model` rewrite, the
// router's own responses; and the routes file (our schema) with its key references.
#include "openshell/proxy/inference_api.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "openshell/proxy/inference_routes.hpp"

namespace proxy = openshell::proxy;
using Json = nlohmann::json;

namespace {

proxy::InferenceRoute route(std::string name, std::vector<std::string> protocols,
                            std::string key = "sk-route", std::string provider = "") {
  return proxy::InferenceRoute{std::move(name),      "http://127.0.0.1:9/v1", "m",
                               std::move(protocols), std::move(provider),     std::move(key)};
}

std::string header(const std::vector<proxy::HeaderField>& fields, std::string_view name) {
  std::string out;
  int count = 0;
  for (const auto& f : fields) {
    if (proxy::ascii_iequals(f.name, name)) {
      out = f.value;
      ++count;
    }
  }
  REQUIRE(count <= 1);
  return count == 0 ? "<absent>" : out;
}

proxy::EnvLookup env_of(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST_CASE("inference.local is recognised case-insensitively, trailing dot ignored") {
  CHECK(proxy::is_inference_host("inference.local"));
  CHECK(proxy::is_inference_host("Inference.LOCAL"));
  CHECK(proxy::is_inference_host("inference.local."));
  CHECK_FALSE(proxy::is_inference_host("inference.local.evil"));
  CHECK_FALSE(proxy::is_inference_host("xinference.local"));
}

TEST_CASE("the six issue paths, models/*, and nothing else are inference requests") {
  const std::vector<std::tuple<std::string, std::string, std::string>> known{
      {"POST", "/v1/chat/completions", "openai_chat_completions"},
      {"post", "/v1/completions", "openai_completions"},
      {"POST", "/v1/responses", "openai_responses"},
      {"POST", "/v1/embeddings", "openai_embeddings"},
      {"POST", "/v1/messages?beta=true", "anthropic_messages"},
      {"GET", "/v1/models", "model_discovery"},
      {"GET", "/v1/models/gpt-4o", "model_discovery"},
  };
  for (const auto& [method, path, protocol] : known) {
    INFO(method << " " << path);
    const auto pattern = proxy::classify_inference_request(method, path);
    REQUIRE(pattern);
    CHECK(pattern->protocol == protocol);
  }
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/v1/chat/completions"},
                                                        {"POST", "/v1/models"},
                                                        {"GET", "/v1/models/"},
                                                        {"POST", "/v1/chat/completions/"},
                                                        {"POST", "/v2/chat/completions"},
                                                        {"GET", "/"},
                                                        {"POST", "/V1/messages"},
                                                        {"DELETE", "/v1/models/x"},
                                                        {"POST", "//v1/messages"}}) {
    INFO(method << " " << path);
    CHECK_FALSE(proxy::classify_inference_request(method, path));
  }
}

TEST_CASE("route selection: first route serving the protocol; families and ids") {
  const std::vector<proxy::InferenceRoute> routes{
      route("sandbox-system", {"openai"}), route("claude", {"anthropic"}), route("gpt", {"openai"}),
      route("embed-only", {"openai_embeddings"})};
  CHECK(proxy::select_route(routes, "openai_chat_completions")->name == "gpt");
  CHECK(proxy::select_route(routes, "anthropic_messages")->name == "claude");
  CHECK(proxy::select_route(routes, "model_discovery")->name == "claude");
  CHECK(proxy::select_route(routes, "openai_embeddings")->name == "gpt");
  const std::vector<proxy::InferenceRoute> only_anthropic{route("claude", {"anthropic"})};
  CHECK(proxy::select_route(only_anthropic, "openai_chat_completions") == nullptr);
  CHECK(proxy::is_known_inference_protocol("openai"));
  CHECK(proxy::is_known_inference_protocol("anthropic_messages"));
  CHECK_FALSE(proxy::is_known_inference_protocol("bedrock"));
}

TEST_CASE("backend URL parsing and the /v1 rule of spec §5.3") {
  auto url = proxy::parse_backend_url("https://api.openai.com/v1/");
  REQUIRE(url.ok());
  CHECK(url->tls);
  CHECK(url->port == 443);
  CHECK(url->base_path == "/v1");
  CHECK(url->host_header() == "api.openai.com");
  CHECK(proxy::backend_target(*url, "/v1/chat/completions") == "/v1/chat/completions");

  url = proxy::parse_backend_url("http://127.0.0.1:8080");
  REQUIRE(url.ok());
  CHECK(url->host_header() == "127.0.0.1:8080");
  CHECK(proxy::backend_target(*url, "/v1/messages") == "/v1/messages");

  url = proxy::parse_backend_url("HTTP://[::1]:81/api/v1");
  REQUIRE(url.ok());
  CHECK(url->ipv6);
  CHECK(url->host_header() == "[::1]:81");
  CHECK(proxy::backend_target(*url, "/v1/models?x=1") == "/api/v1/models?x=1");
  CHECK(proxy::backend_target(*url, "/v1") == "/api/v1");

  url = proxy::parse_backend_url("https://api.deepinfra.com/v1/openai");
  REQUIRE(url.ok());
  CHECK(proxy::backend_target(*url, "/v1/chat/completions") == "/v1/openai/chat/completions");
  url = proxy::parse_backend_url("https://example.com/openai");
  REQUIRE(url.ok());
  CHECK(proxy::backend_target(*url, "/v1/chat/completions") == "/openai/v1/chat/completions");
  CHECK(proxy::backend_target(*url, "/v1x") == "/openai/v1x");

  for (const char* bad : {"ftp://x", "http://", "http://user@host/", "http://h/p?q=1",
                          "http://h:0/", "http://h:99999/", "http://h/a b", "http//h"}) {
    INFO(bad);
    CHECK_FALSE(proxy::parse_backend_url(bad).ok());
  }
}

TEST_CASE("header rewrite: client credentials and hop-by-hop dropped, the route's key injected") {
  const std::vector<proxy::HeaderField> in{{"Host", "inference.local"},
                                           {"Authorization", "Bearer client-key"},
                                           {"x-api-key", "client-key"},
                                           {"Content-Type", "application/json"},
                                           {"Content-Length", "12"},
                                           {"Connection", "keep-alive"},
                                           {"Proxy-Authorization", "Basic abc"},
                                           {"Cookie", "a=b"},
                                           {"Accept", "text/event-stream"},
                                           {"User-Agent", "curl/8"},
                                           {"OpenAI-Organization", "org-1"},
                                           {"anthropic-beta", "tools"},
                                           {"Transfer-Encoding", "chunked"},
                                           {"X-Custom", "1"}};
  const auto openai = proxy::rewrite_inference_headers(in, route("gpt", {"openai"}));
  CHECK(header(openai, "authorization") == "Bearer sk-route");
  CHECK(header(openai, "x-api-key") == "<absent>");
  CHECK(header(openai, "content-type") == "application/json");
  CHECK(header(openai, "accept") == "text/event-stream");
  CHECK(header(openai, "user-agent") == "curl/8");
  CHECK(header(openai, "openai-organization") == "org-1");
  for (const char* gone :
       {"host", "content-length", "connection", "proxy-authorization", "cookie", "anthropic-beta",
        "transfer-encoding", "x-custom", "anthropic-version"}) {
    INFO(gone);
    CHECK(header(openai, gone) == "<absent>");
  }

  const auto anthropic = proxy::rewrite_inference_headers(in, route("claude", {"anthropic"}));
  CHECK(header(anthropic, "x-api-key") == "sk-route");
  CHECK(header(anthropic, "authorization") == "<absent>");
  CHECK(header(anthropic, "anthropic-version") == "2023-06-01");
  CHECK(header(anthropic, "anthropic-beta") == "tools");
  CHECK(header(anthropic, "openai-organization") == "<absent>");

  // The client's own anthropic-version is kept; a route without a key injects none.
  const auto own = proxy::rewrite_inference_headers({{"Anthropic-Version", "2024-01-01"}},
                                                    route("claude", {"anthropic"}, ""));
  CHECK(header(own, "anthropic-version") == "2024-01-01");
  CHECK(header(own, "x-api-key") == "<absent>");
  // provider_type decides the auth style over the protocols.
  const auto typed = proxy::rewrite_inference_headers({}, route("x", {"anthropic"}, "k", "openai"));
  CHECK(header(typed, "authorization") == "Bearer k");
}

TEST_CASE("model rewrite: top-level model of a JSON object, order kept, others untouched") {
  std::string body = R"({"stream":true,"model":"client-model","messages":[{"model":"inner"}]})";
  std::string previous;
  CHECK(proxy::rewrite_model(body, "route-model", &previous) == proxy::ModelRewrite::kRewritten);
  CHECK(previous == "client-model");
  CHECK(body == R"({"stream":true,"model":"route-model","messages":[{"model":"inner"}]})");

  body = R"({"input":"hi"})";
  CHECK(proxy::rewrite_model(body, "m", nullptr) == proxy::ModelRewrite::kRewritten);
  CHECK(Json::parse(body) == Json{{"input", "hi"}, {"model", "m"}});

  for (std::string untouched : {std::string("not json"), std::string("[1,2]"),
                                std::string("{\"a\":"), std::string("\"s\""), std::string()}) {
    const std::string before = untouched;
    CHECK(proxy::rewrite_model(untouched, "m", nullptr) == proxy::ModelRewrite::kUntouched);
    CHECK(untouched == before);
  }
  body = R"({"model":"keep"})";
  CHECK(proxy::rewrite_model(body, "", &previous) == proxy::ModelRewrite::kUntouched);
  CHECK(body == R"({"model":"keep"})");

  std::string deep = "{\"a\":" + std::string(200, '[') + std::string(200, ']') + "}";
  CHECK(proxy::rewrite_model(deep, "m", nullptr) == proxy::ModelRewrite::kTooDeep);
  // Brackets inside strings do not count.
  std::string quoted = "{\"a\":\"" + std::string(500, '[') + "\"}";
  CHECK(proxy::rewrite_model(quoted, "m", nullptr) == proxy::ModelRewrite::kRewritten);
  CHECK(proxy::requested_model(R"({"model":"x"})") == "x");
  CHECK(proxy::requested_model("[]").empty());
}

TEST_CASE("router responses: JSON errors with Connection: close, 503 hint, SSE error event") {
  const std::string r503 = proxy::inference_not_configured_response();
  CHECK(r503.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
  const std::string body503 = r503.substr(r503.find("\r\n\r\n") + 4);
  CHECK(Json::parse(body503)["error"] == "cluster inference is not configured");
  CHECK(r503.find("Content-Length: " + std::to_string(body503.size()) + "\r\n") !=
        std::string::npos);
  CHECK(r503.find("Connection: close\r\n") != std::string::npos);

  const std::string r413 = proxy::inference_payload_too_large_response();
  CHECK(r413.starts_with("HTTP/1.1 413 Payload Too Large\r\n"));
  const std::string r400 = proxy::inference_error_response(400, "no \"compatible\" route");
  CHECK(Json::parse(r400.substr(r400.find("\r\n\r\n") + 4))["error"] == "no \"compatible\" route");

  const std::string event = proxy::inference_stream_error_event("response truncated: x");
  REQUIRE(event.starts_with("data: "));
  REQUIRE(event.ends_with("\n\n"));
  const Json parsed = Json::parse(event.substr(6, event.size() - 8));
  CHECK(parsed["error"]["type"] == "proxy_stream_error");
  CHECK(parsed["error"]["message"] == "response truncated: x");
}

TEST_CASE("response head for the client: framing replaced, hop-by-hop dropped") {
  const std::string raw =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close, X-Hop\r\nX-Hop: 1\r\nX-Request-Id: abc\r\n\r\n";
  const auto parsed = proxy::parse_response_head(raw);
  REQUIRE(parsed.status == proxy::ResponseParse::kComplete);
  const std::string streamed = proxy::inference_response_head(parsed.head, true, 0, true);
  CHECK(streamed ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: abc\r\n"
        "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
  CHECK(proxy::is_streaming_response(parsed.head, proxy::BodyFraming::kLength));
  const std::string buffered = proxy::inference_response_head(parsed.head, false, 17, false);
  CHECK(buffered.find("Content-Length: 17\r\nConnection: close\r\n\r\n") != std::string::npos);
  CHECK(buffered.find("Transfer-Encoding") == std::string::npos);

  const auto json_head = proxy::parse_response_head(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n");
  CHECK_FALSE(proxy::is_streaming_response(json_head.head, proxy::BodyFraming::kLength));
  CHECK(proxy::is_streaming_response(json_head.head, proxy::BodyFraming::kChunked));
}

TEST_CASE("routes file: our schema, key references resolved, old field names accepted") {
  const std::string yaml = R"(
routes:
  - name: local-openai
    protocol: openai
    base_url: http://127.0.0.1:8000/v1
    model: gpt-test
    api_key_env: TEST_OPENAI_KEY
  - route: claude
    protocols: [Anthropic]
    endpoint: https://api.anthropic.com
    api_key: sk-ant-inline
  - name: keyless
    protocol: openai_embeddings
    base_url: http://localhost:11434/v1
)";
  auto routes =
      proxy::parse_inference_routes(yaml, "r.yaml", env_of({{"TEST_OPENAI_KEY", "sk-env"}}));
  REQUIRE(routes.ok());
  REQUIRE(routes->size() == 3);
  CHECK((*routes)[0].name == "local-openai");
  CHECK((*routes)[0].protocols == std::vector<std::string>{"openai"});
  CHECK((*routes)[0].endpoint == "http://127.0.0.1:8000/v1");
  CHECK((*routes)[0].model == "gpt-test");
  CHECK((*routes)[0].api_key == "sk-env");
  CHECK((*routes)[1].protocols == std::vector<std::string>{"anthropic"});
  CHECK((*routes)[1].api_key == "sk-ant-inline");
  CHECK((*routes)[2].api_key.empty());

  // JSON is YAML.
  auto json = proxy::parse_inference_routes(
      R"({"routes":[{"name":"j","protocol":"openai","base_url":"http://h/v1","api_key":"k"}]})",
      "r.json", env_of({}));
  REQUIRE(json.ok());
  CHECK(json->front().name == "j");

  const std::string path = "/tmp/openshell-unit-route-key-" + std::to_string(::getpid());
  std::ofstream(path) << "sk-from-file\n";
  auto from_file = proxy::parse_inference_routes(
      "routes: [{name: f, protocol: anthropic, base_url: 'http://h', api_key_file: '" + path +
          "'}]",
      "r.yaml", env_of({}));
  std::remove(path.c_str());
  REQUIRE(from_file.ok());
  CHECK(from_file->front().api_key == "sk-from-file");

  auto cleared = proxy::parse_inference_routes("routes:\n", "r.yaml", env_of({}));
  REQUIRE(cleared.ok());
  CHECK(cleared->empty());
}

TEST_CASE("routes file: every mistake is refused with where it is") {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"routes: 3", "'routes' must be a list"},
      {"other: []", "top-level 'routes'"},
      {"routes: [{name: a, protocol: openai}]", "base_url is missing"},
      {"routes: [{name: a, protocol: openai, base_url: 'ftp://h'}]", "http(s) URL"},
      {"routes: [{name: a, protocol: bedrock, base_url: 'http://h'}]", "unknown protocol"},
      {"routes: [{name: a, base_url: 'http://h'}]", "protocol is missing"},
      {"routes: [{protocol: openai, base_url: 'http://h'}]", "name is empty"},
      {"routes: [{name: a, protocol: openai, base_url: 'http://h', api_key_env: NOPE}]",
       "NOPE is not set"},
      {"routes: [{name: a, protocol: openai, base_url: 'http://h', api_key: k, api_key_env: E}]",
       "one of api_key"},
      {"routes: [{name: a, protocol: openai, base_url: 'http://h', basee_url: x}]",
       "unknown field 'basee_url'"},
      {"routes: [{name: a, protocol: openai, base_url: 'http://h', api_key: \"a\\nb\"}]",
       "printable"},
      {"routes: [{name: a, protocol: openai, base_url: 'http://h'}, "
       "{name: a, protocol: openai, base_url: 'http://h'}]",
       "duplicate route name 'a'"},
      {"routes: [{name: a, protocol: openai, base_url: 'http://h', api_key_file: /nonexistent/k}]",
       "api_key_file"},
      {"routes: [", ""},
  };
  for (const auto& [text, message] : cases) {
    INFO(text);
    auto parsed = proxy::parse_inference_routes(text, "r.yaml", env_of({{"E", "v"}}));
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error().message, Catch::Contains(message));
    CHECK_THAT(parsed.error().message, Catch::Contains("r.yaml"));
  }
}

TEST_CASE("route table: snapshots survive replacement; keys never in a new snapshot") {
  proxy::InferenceRouteTable table;
  REQUIRE(table.snapshot() != nullptr);
  CHECK(table.snapshot()->empty());
  table.replace({route("a", {"openai"}, "sk-first")});
  const auto held = table.snapshot();
  table.replace({route("b", {"openai"}, "sk-second")});
  CHECK(held->front().api_key == "sk-first");  // a request in flight keeps its routes
  CHECK(table.snapshot()->front().name == "b");
  std::string secret = "sk-wipe";
  proxy::wipe_secret(secret);
  CHECK(secret.empty());
}
