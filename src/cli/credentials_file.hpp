// `ctl set-credentials --file F` in YAML form: credentials with endpoint bindings (spec §4.1).
#pragma once

#include <string>

#include "openshell/core/result.hpp"
#include "openshell/proxy/credentials.hpp"

namespace openshell::cli {

// Whether `text` is the YAML form (a top-level `credentials:` key) rather than KEY=VALUE lines.
bool is_credentials_yaml(const std::string& text);

// credentials: [{key: K, value: V | env: VAR | file: PATH, bindings: [{host, port, path}]}]
// Errors name the file, entry and key, never a value.
Result<proxy::CredentialMap> parse_credentials_yaml(const std::string& text,
                                                    const std::string& path);

}  // namespace openshell::cli
