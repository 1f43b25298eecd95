// Sans-I/O credential placeholder substitution in an outbound request (spec §4.3–4.5): the
// request target (path segments, query values) and header values, plus the redacted target that
// policy evaluation and logs see instead. Bodies: credential_body.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/proxy/credentials.hpp"
#include "openshell/proxy/http_head.hpp"

namespace openshell::proxy {

// What replaces a placeholder in the redacted target (spec §4.4).
inline constexpr std::string_view kRedactedCredential = "[CREDENTIAL]";

enum class CredentialFailure {
  kNone,
  kUnavailable,       // 500 credential_unavailable: unknown key, malformed or leftover marker
  kEndpointMismatch,  // 403 credential_endpoint_mismatch: key bound elsewhere
};

// The request a placeholder is resolved for. `set` null: no credentials (every marker fails).
struct CredentialScope {
  const CredentialSet* set = nullptr;
  std::string_view host;  // lowercase
  uint16_t port = 0;
  std::string_view path;  // redacted path, no query (what bindings are matched against)
};

struct CredentialOutcome {
  CredentialFailure failure = CredentialFailure::kNone;
  std::string key;  // the key that failed (a name, never a value); empty for a bare marker
  bool substituted = false;
  bool ok() const { return failure == CredentialFailure::kNone; }
};

// Result of rewriting a request head.
struct HeadRewrite {
  CredentialOutcome outcome;
  std::string target;    // origin-form target for the upstream (secrets substituted)
  std::string redacted;  // the same target with every placeholder as [CREDENTIAL]
};

// Rewrites `target` (origin form: path[?query]) and `headers` in place of a request to
// scope.host:port. scope.path is ignored (the redacted path of `target` is used). On failure
// `headers` may be partly rewritten and must not be sent.
HeadRewrite rewrite_request_credentials(std::string_view target, std::vector<HeaderField>& headers,
                                        CredentialScope scope);

// The placeholder-free form of `target` for policy and logs (no resolution needed).
std::string redact_target(std::string_view target);

// Whether `text` holds a placeholder marker, plain or percent-encoded (`%3A`), any case.
bool contains_credential_marker(std::string_view text);

// Replaces every placeholder in `text`, appending to `out`; each secret is passed through
// `escape` (identity when null). False (with `outcome` set) when one cannot be resolved.
using SecretEscape = void (*)(std::string_view secret, std::string& out);
bool substitute_placeholders(std::string_view text, const CredentialScope& scope, std::string& out,
                             CredentialOutcome& outcome, SecretEscape escape = nullptr);

// RFC 3986 helpers shared with the body rewriter.
bool percent_decode(std::string_view text, std::string& out, bool plus_is_space);
void percent_encode_unreserved(std::string_view text, std::string& out, bool space_as_plus);

}  // namespace openshell::proxy
