// Sans-I/O placeholder substitution in request bodies (spec §4.3 "Request body"): only where the
// endpoint opts in (`request_body_credential_rewrite`), only UTF-8 JSON, form and text bodies,
// and only up to kMaxCredentialBodyBytes, which the caller buffers before calling.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "openshell/proxy/credential_rewrite.hpp"

namespace openshell::proxy {

// Spec §8: a body that must be buffered for rewriting is bounded (chunked framing counts).
inline constexpr size_t kMaxCredentialBodyBytes = 256 * 1024;

enum class CredentialBodyKind { kOther, kJson, kForm, kText };

// From a Content-Type value: application/json (and +json), application/x-www-form-urlencoded,
// text/*; a charset other than UTF-8 (or US-ASCII) gives kOther.
CredentialBodyKind credential_body_kind(std::string_view content_type);

// Substitutes placeholders in `body` in place. JSON: the secret is escaped as a JSON string
// character sequence; form: each value holding a placeholder is form-decoded, substituted and
// re-encoded; text: verbatim. On failure `body` is wiped and cleared.
CredentialOutcome rewrite_credential_body(CredentialBodyKind kind, std::string& body,
                                          const CredentialScope& scope);

}  // namespace openshell::proxy
