// The proxy's inference route table (an atomically replaced snapshot whose keys are wiped when
// it goes) and the checks every route passes before the proxy takes it.
#include "openshell/proxy/inference_routes.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdlib>

#include "openshell/proxy/inference_api.hpp"

namespace openshell::proxy {

namespace {

// Route names appear in events and `ctl status`; keep them short and printable.
constexpr size_t kMaxRouteNameBytes = 128;
constexpr size_t kMaxApiKeyBytes = 16 * 1024;

std::shared_ptr<const InferenceRoutes> make_snapshot(InferenceRoutes routes) {
  return std::shared_ptr<const InferenceRoutes>(new InferenceRoutes(std::move(routes)),
                                                [](const InferenceRoutes* held) {
                                                  auto* owned = const_cast<InferenceRoutes*>(held);
                                                  for (InferenceRoute& route : *owned)
                                                    wipe_secret(route.api_key);
                                                  delete owned;
                                                });
}

bool printable(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u != 0x7f;
  });
}

}  // namespace

void wipe_secret(std::string& secret) {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

InferenceRouteTable::InferenceRouteTable() : current_(make_snapshot({})) {}

void InferenceRouteTable::replace(InferenceRoutes routes) {
  std::shared_ptr<const InferenceRoutes> next = make_snapshot(std::move(routes));
  const std::lock_guard lock(mutex_);
  current_.swap(next);  // the old snapshot dies here, or with the last request holding it
}

std::shared_ptr<const InferenceRoutes> InferenceRouteTable::snapshot() const {
  const std::lock_guard lock(mutex_);
  return current_;
}

Result<void> validate_inference_route(const InferenceRoute& route, std::string_view where) {
  const std::string at = std::string(where) + (route.name.empty() ? "" : " (" + route.name + ")");
  const auto fail = [&](const std::string& what) {
    return make_error(Errc::kInvalidArgument, at + ": " + what);
  };
  if (route.name.empty()) return fail("name is empty");
  if (route.name.size() > kMaxRouteNameBytes || !printable(route.name)) {
    return fail("name must be printable and at most 128 bytes");
  }
  const std::string scheme = route.endpoint.substr(0, 8);
  if (!scheme.starts_with("http://") && !scheme.starts_with("https://")) {
    return fail("base_url must be an http(s) URL, got '" + route.endpoint + "'");
  }
  if (auto url = parse_backend_url(route.endpoint); !url.ok()) {
    return fail("base_url: " + url.error().message);
  }
  if (route.protocols.empty()) return fail("protocol is missing (openai or anthropic)");
  for (const std::string& protocol : route.protocols) {
    if (!is_known_inference_protocol(protocol)) {
      return fail("unknown protocol '" + protocol + "' (openai, anthropic, or a protocol id)");
    }
  }
  // The key becomes a header value: a line break in it would forge headers.
  if (route.api_key.size() > kMaxApiKeyBytes || !printable(route.api_key)) {
    return fail("api key must be printable and at most 16 KiB");
  }
  if (!printable(route.model) || !printable(route.provider_type)) {
    return fail("model and provider_type must be printable");
  }
  return {};
}

std::optional<std::string> process_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): read at start
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

}  // namespace openshell::proxy
