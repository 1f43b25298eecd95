// The YAML credentials file of `ctl set-credentials --file`: values inline, from the caller's
// environment or from a file, and the endpoints each key may be injected into.
#include "credentials_file.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

namespace openshell::cli {

namespace {

Error bad(const std::string& where, const std::string& message) {
  return Error{Errc::kInvalidArgument, where + ": " + message};
}

}  // namespace

bool is_credentials_yaml(const std::string& text) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line.front() == '#') continue;
    return line.starts_with("credentials:");
  }
  return false;
}

Result<proxy::CredentialMap> parse_credentials_yaml(const std::string& text,
                                                    const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // The mark only: a parser message may quote the offending line, which may hold a secret.
    return bad(path, "not valid YAML (line " + std::to_string(e.mark.line + 1) + ")");
  }
  const YAML::Node list = root["credentials"];
  if (!list || !list.IsSequence()) return bad(path, "credentials: expected a list");
  proxy::CredentialMap out;
  try {
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node item = list[i];
      const std::string where = path + ": credentials[" + std::to_string(i) + "]";
      if (!item.IsMap() || !item["key"]) return bad(where, "expected a map with `key`");
      const std::string key = item["key"].as<std::string>();
      const int sources = (item["value"] ? 1 : 0) + (item["env"] ? 1 : 0) + (item["file"] ? 1 : 0);
      if (sources != 1)
        return bad(where + " (" + key + ")", "give exactly one of value, env, file");
      proxy::CredentialSpec spec;
      if (item["value"]) {
        spec.value = item["value"].as<std::string>();
      } else if (item["env"]) {
        const std::string var = item["env"].as<std::string>();
        const char* value = std::getenv(var.c_str());
        if (value == nullptr) return bad(where + " (" + key + ")", "env " + var + " is not set");
        spec.value = value;
      } else {
        const std::string file = item["file"].as<std::string>();
        std::ifstream in(file, std::ios::binary);
        if (!in) return bad(where + " (" + key + ")", "cannot read " + file);
        spec.value.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        while (!spec.value.empty() && (spec.value.back() == '\n' || spec.value.back() == '\r'))
          spec.value.pop_back();
      }
      if (const YAML::Node bindings = item["bindings"]) {
        if (!bindings.IsSequence())
          return bad(where + " (" + key + ")", "bindings: expected a list");
        for (const YAML::Node& b : bindings) {
          proxy::CredentialBinding binding;
          if (b["host"]) binding.host = b["host"].as<std::string>();
          if (b["port"]) {
            const int port = b["port"].as<int>();
            if (port < 0 || port > 65535) {
              return bad(where + " (" + key + ")", "binding port is not 0..65535");
            }
            binding.port = static_cast<uint16_t>(port);
          }
          if (b["path"]) binding.path = b["path"].as<std::string>();
          spec.bindings.push_back(std::move(binding));
        }
      }
      if (!out.emplace(key, std::move(spec)).second) {
        return bad(where, "credential key '" + key + "' given twice");
      }
    }
  } catch (const YAML::Exception& e) {
    return bad(path, "unexpected value type (line " + std::to_string(e.mark.line + 1) + ")");
  }
  return out;
}

}  // namespace openshell::cli
