// Private to the sandbox layer: `--credential KEY=ENV_VAR` / `--credential KEY=@FILE` (spec
// §4.2). Values are read from openshell's own environment or a file before the child exists;
// the child's environment gets only the placeholder.
#pragma once

#include <string>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/proxy/credentials.hpp"

namespace openshell::sandbox {

struct SandboxCredentials {
  proxy::CredentialMap secrets;
  std::vector<std::string> child_env;  // KEY=openshell:resolve:env:KEY, for MainCommand.env
  SandboxCredentials() = default;
  SandboxCredentials(SandboxCredentials&&) = default;
  SandboxCredentials& operator=(SandboxCredentials&&) = default;
  ~SandboxCredentials();  // wipes the secrets
};

// Errors name the flag and key, never a value.
Result<SandboxCredentials> read_credential_flags(const std::vector<std::string>& flags);

}  // namespace openshell::sandbox
