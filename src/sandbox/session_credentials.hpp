// The CredentialProvider of `openshell sandbox`: SSH sessions get the placeholders of the
// credentials the proxy holds when the session starts (including ones `ctl set-credentials` sent
// later), never the secrets.
#pragma once

#include <string>
#include <vector>

#include "openshell/proxy/credentials.hpp"
#include "openshell/runtime/credential_provider.hpp"

namespace openshell::sandbox {

class ProxyCredentialProvider : public runtime::CredentialProvider {
 public:
  // `store` is borrowed: it must outlive the SSH server.
  explicit ProxyCredentialProvider(const proxy::CredentialStore& store) : store_(store) {}
  std::vector<std::string> session_environment() const override;

 private:
  const proxy::CredentialStore& store_;
};

}  // namespace openshell::sandbox
