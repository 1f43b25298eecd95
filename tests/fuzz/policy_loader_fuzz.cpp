// libFuzzer target: any byte string fed to the policy loader yields a document or located
// errors, never a crash or hang; a loaded document compiles and decides.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "openshell/policy/engine.hpp"
#include "openshell/policy/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openshell::policy;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  LoadResult result = load_policy(text);
  if (!result.ok()) {
    if (result.diagnostics.empty()) __builtin_trap();  // a failure must say why
    return 0;
  }
  const auto engine = compile_policy(std::move(*result.document), 1);
  // Decide against the hosts the document itself names, so matching code runs on fuzzed input.
  const QueryParams query{{"q", "v"}};
  for (const auto& [key, policy] : engine->document().network_policies) {
    for (const auto& endpoint : policy.endpoints) {
      const uint16_t port = endpoint.ports.empty() ? 443 : endpoint.ports.front();
      const ConnectInput connection{endpoint.host, port, nullptr};
      (void)engine->decide_connect(connection);
      (void)engine->decide_request(connection, RequestInput{"GET", "/a/b", &query});
    }
  }
  return 0;
}
