// Where an SSH session's credentials come from (issue 9). The runtime does not know the proxy:
// `openshell sandbox` plugs in the placeholders of the secrets its proxy holds, so a session
// opened after `ctl set-credentials` sees the new keys, never the secrets.
#pragma once

#include <string>
#include <vector>

namespace openshell::runtime {

class CredentialProvider {
 public:
  virtual ~CredentialProvider() = default;
  // KEY=VALUE entries for a new session's environment, replacing entries of the same key.
  virtual std::vector<std::string> session_environment() const = 0;
};

}  // namespace openshell::runtime
