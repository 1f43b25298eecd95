// The inference routes the proxy serves `inference.local` with (spec §5.3): an immutable
// snapshot swapped atomically, so a request keeps the routes it started with; the routes file
// an operator writes (our schema, openshell-proxy(1) "INFERENCE ROUTES"); and the validation
// both `ctl` and the proxy apply. Route keys are secrets: wiped from memory when the last
// snapshot holding them goes, never logged, never returned by status.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/proxy/control.hpp"

namespace openshell::proxy {

using InferenceRoutes = std::vector<InferenceRoute>;

class InferenceRouteTable {
 public:
  InferenceRouteTable();
  // Replaces every route; the previous snapshot's keys are wiped once no request holds it.
  void replace(InferenceRoutes routes);
  // Never null; empty when no route is configured.
  std::shared_ptr<const InferenceRoutes> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const InferenceRoutes> current_;
};

// Zeroes a secret's bytes in place (not optimised away), then clears it.
void wipe_secret(std::string& secret);

// Checks one route as the proxy will use it; the error names the route and the field.
Result<void> validate_inference_route(const InferenceRoute& route, std::string_view where);

// Reads an environment variable (tests substitute their own).
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
std::optional<std::string> process_env(const std::string& name);

// Parses a routes document (YAML or JSON):
//   routes:
//     - name: local-openai            # or `route:`
//       protocol: openai              # openai | anthropic | a spec protocol id; or `protocols:
//       [...]` base_url: http://127.0.0.1:8000/v1   # or `endpoint:` model: gpt-4o-mini # optional:
//       the `model` every request is rewritten to api_key_env: OPENAI_API_KEY   # or `api_key: ...`
//       or `api_key_file: PATH`; optional provider_type: openai         # optional: auth style
//       (openai → Bearer, anthropic → x-api-key)
// Key references are resolved here, by whoever reads the file (`ctl`, or the proxy/sandbox at
// start), so the secret travels only over the control socket. `source` names the file in errors;
// relative api_key_file paths are taken as given (relative to the working directory).
Result<InferenceRoutes> parse_inference_routes(std::string_view text, std::string_view source,
                                               const EnvLookup& env = process_env);

// Reads and parses a routes file (at most 1 MiB). Errc::kIo when it cannot be read.
Result<InferenceRoutes> load_inference_routes(const std::string& path,
                                              const EnvLookup& env = process_env);

}  // namespace openshell::proxy
