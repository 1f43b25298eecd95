// Reading `openshell sandbox --credential` values: from an environment variable or a file.
#include "credential_flags.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "openshell/proxy/control.hpp"

namespace openshell::sandbox {

SandboxCredentials::~SandboxCredentials() {
  for (auto& [key, spec] : secrets)
    proxy::wipe(spec.value);
}

Result<SandboxCredentials> read_credential_flags(const std::vector<std::string>& flags) {
  SandboxCredentials out;
  for (const std::string& flag : flags) {
    const size_t eq = flag.find('=');
    const std::string key = flag.substr(0, eq);
    if (eq == std::string::npos || eq + 1 == flag.size() || !proxy::valid_credential_key(key)) {
      return make_error(Errc::kInvalidArgument,
                        "--credential " + key +
                            ": expected KEY=ENV_VAR or KEY=@FILE with KEY [A-Za-z_][A-Za-z0-9_]*");
    }
    const std::string source = flag.substr(eq + 1);
    std::string value;
    if (source.front() == '@') {
      const std::string path = source.substr(1);
      std::ifstream in(path, std::ios::binary);
      if (!in) return make_error(Errc::kIo, "--credential " + key + ": cannot read " + path);
      value.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (value.size() > proxy::kMaxSecretBytes) {
        proxy::wipe(value);
        return make_error(Errc::kInvalidArgument, "--credential " + key + ": " + path +
                                                      " is larger than the credential limit");
      }
      while (!value.empty() && (value.back() == '\n' || value.back() == '\r'))
        value.pop_back();
    } else {
      const char* env = std::getenv(source.c_str());
      if (env == nullptr) {
        return make_error(
            Errc::kInvalidArgument,
            "--credential " + key + ": environment variable " + source + " is not set");
      }
      value = env;
    }
    out.secrets[key].value = std::move(value);
    out.child_env.push_back(key + "=" + proxy::credential_placeholder(key));
  }
  return out;
}

}  // namespace openshell::sandbox
