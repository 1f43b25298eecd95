// libFuzzer target for credential injection (spec §4.3–4.5). Input: a request target, a header
// value and a body, separated by NUL. Invariants: a success leaves no placeholder marker in the
// target or headers; a failure hands back no target; the redacted target never holds a secret;
// bodies never grow a marker they did not have; nothing crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/proxy/credential_body.hpp"
#include "openshell/proxy/credential_rewrite.hpp"

namespace {

namespace proxy = openshell::proxy;

void require(bool ok) {
  if (!ok) std::abort();
}

const proxy::CredentialSet& credentials() {
  static const auto set = [] {
    proxy::CredentialMap map;
    map["K"].value = "SECRETVALUE1";
    map["B"].value = "SECRETVALUE2";
    map["B"].bindings.push_back({"api.test", 443, "/v1/**"});
    map["S"].value = "a/b?c";
    return *proxy::CredentialSet::build(map);
  }();
  return *set;
}

bool holds_secret(std::string_view text) {
  return text.find("SECRETVALUE") != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t first = input.find('\0');
  const std::string_view target = input.substr(0, first);
  std::string_view rest = first == std::string_view::npos ? "" : input.substr(first + 1);
  const size_t second = rest.find('\0');
  const std::string_view header = rest.substr(0, second);
  const std::string_view body = second == std::string_view::npos ? "" : rest.substr(second + 1);
  if (holds_secret(input)) return 0;  // the invariants below are about secrets we put in

  std::vector<proxy::HeaderField> headers{{"Authorization", std::string(header)},
                                          {"X-Key", std::string(header)}};
  const proxy::CredentialScope scope{&credentials(), "api.test", 443, {}};
  const proxy::HeadRewrite out = proxy::rewrite_request_credentials(target, headers, scope);
  require(!holds_secret(out.redacted));
  if (out.outcome.ok()) {
    require(!proxy::contains_credential_marker(out.target));
    for (const auto& field : headers)
      require(!proxy::contains_credential_marker(field.value));
  } else {
    require(out.target.empty());
  }
  require(!holds_secret(proxy::redact_target(target)));

  for (const auto kind : {proxy::CredentialBodyKind::kJson, proxy::CredentialBodyKind::kForm,
                          proxy::CredentialBodyKind::kText}) {
    std::string copy(body);
    const proxy::CredentialOutcome outcome = proxy::rewrite_credential_body(kind, copy, scope);
    if (!outcome.ok()) require(copy.empty());
  }
  (void)proxy::credential_body_kind(header);
  return 0;
}
