// libFuzzer target for inference routing's pure parts: request classification, the `model`
// rewrite of a client body, backend URL parsing and target building. Invariants: nothing
// crashes or recurses without bound; a rewritten body is a JSON object whose top-level "model"
// is the route's; an untouched body is byte-identical; a built target starts with '/' and
// carries no CR/LF.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "openshell/proxy/inference_api.hpp"

namespace {

namespace proxy = openshell::proxy;

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // First line: "METHOD TARGET" (classification, URL rule); the rest: the body.
  const size_t newline = input.find('\n');
  const std::string_view line = input.substr(0, newline);
  const std::string_view body_text =
      newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);
  const size_t space = line.find(' ');
  const std::string_view method = line.substr(0, space);
  const std::string_view target =
      space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);

  const auto pattern = proxy::classify_inference_request(method, target);
  if (pattern) require(!pattern->protocol.empty() && target.starts_with("/v1/"));

  if (auto url = proxy::parse_backend_url(target); url.ok()) {
    const std::string built = proxy::backend_target(*url, "/v1/chat/completions");
    require(built.front() == '/' && built.find_first_of("\r\n") == std::string::npos);
    require(!url->host_header().empty());
  }
  static const auto base = proxy::parse_backend_url("http://backend.test:8000/v1");
  const std::string built = proxy::backend_target(*base, target);
  require(!built.empty() && built.front() == '/');

  std::string body(body_text);
  std::string previous;
  switch (proxy::rewrite_model(body, "route-model", &previous)) {
    case proxy::ModelRewrite::kRewritten: {
      const auto json = nlohmann::json::parse(body, nullptr, false);
      require(json.is_object() && json["model"] == "route-model");
      break;
    }
    case proxy::ModelRewrite::kUntouched:
    case proxy::ModelRewrite::kTooDeep:
      require(body == body_text);
      break;
  }
  (void)proxy::requested_model(body_text);
  return 0;
}
