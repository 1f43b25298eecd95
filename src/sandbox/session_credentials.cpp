// KEY=openshell:resolve:env:KEY for each credential the proxy holds now.
#include "session_credentials.hpp"

namespace openshell::sandbox {

std::vector<std::string> ProxyCredentialProvider::session_environment() const {
  std::vector<std::string> env;
  for (const std::string& key : store_.current()->keys())
    env.push_back(key + "=" + std::string(proxy::kPlaceholderPrefix) + key);
  return env;
}

}  // namespace openshell::sandbox
