// The routes file (YAML or JSON, our schema; see inference_routes.hpp): parsed, key references
// resolved, every route validated, so a bad file is refused whole with the reason.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "openshell/policy/host_pattern.hpp"
#include "openshell/proxy/inference_routes.hpp"

namespace openshell::proxy {

namespace {

// A routes file is a short document a person wrote; anything bigger is a mistake.
constexpr size_t kMaxRoutesFileBytes = 1024 * 1024;
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

const std::set<std::string, std::less<>> kFields{
    "name",  "route",   "protocol",    "protocols",    "base_url",     "endpoint",
    "model", "api_key", "api_key_env", "api_key_file", "provider_type"};

std::string trim_line_end(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  return text;
}

Result<std::string> read_small_file(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::kIo, "cannot read " + path);
  std::string text;
  text.resize(limit + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > limit) {
    return make_error(Errc::kLimit, path + ": larger than " + std::to_string(limit) + " bytes");
  }
  return text;
}

// One scalar string field, or an error naming it.
Result<std::string> scalar(const YAML::Node& node, const std::string& where,
                           const std::string& field) {
  const YAML::Node value = node[field];
  if (!value.IsScalar())
    return make_error(Errc::kInvalidArgument, where + "." + field + ": expected a string");
  return value.as<std::string>();
}

Result<InferenceRoute> parse_route(const YAML::Node& node, const std::string& where,
                                   const EnvLookup& env) {
  const auto fail = [&](const std::string& what) {
    return make_error(Errc::kInvalidArgument, where + ": " + what);
  };
  if (!node.IsMap()) return fail("expected a mapping");
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    if (!kFields.contains(key)) return fail("unknown field '" + key + "'");
  }
  const auto one_of = [&](const char* a, const char* b) -> Result<std::string> {
    if (node[a] && node[b]) {
      return make_error(Errc::kInvalidArgument, where + ": give " + a + " or " + b + ", not both");
    }
    if (!node[a] && !node[b]) return std::string();
    return scalar(node, where, node[a] ? a : b);
  };

  InferenceRoute route;
  auto name = one_of("name", "route");
  if (!name.ok()) return name.error();
  route.name = *name;
  auto endpoint = one_of("base_url", "endpoint");
  if (!endpoint.ok()) return endpoint.error();
  route.endpoint = *endpoint;
  if (route.endpoint.empty()) return fail("base_url is missing");
  for (const char* field : {"model", "provider_type"}) {
    if (!node[field]) continue;
    auto value = scalar(node, where, field);
    if (!value.ok()) return value.error();
    (std::string_view(field) == "model" ? route.model : route.provider_type) = *value;
  }
  route.provider_type = policy::ascii_lowercase(route.provider_type);

  if (node["protocol"] && node["protocols"]) return fail("give protocol or protocols, not both");
  if (node["protocol"]) {
    auto value = scalar(node, where, "protocol");
    if (!value.ok()) return value.error();
    route.protocols.push_back(policy::ascii_lowercase(*value));
  } else if (node["protocols"]) {
    const YAML::Node list = node["protocols"];
    if (!list.IsSequence()) return fail("protocols: expected a list");
    for (const auto& item : list) {
      if (!item.IsScalar()) return fail("protocols: expected strings");
      route.protocols.push_back(policy::ascii_lowercase(item.as<std::string>()));
    }
  }

  const int key_sources =
      (node["api_key"] ? 1 : 0) + (node["api_key_env"] ? 1 : 0) + (node["api_key_file"] ? 1 : 0);
  if (key_sources > 1) return fail("give one of api_key, api_key_env, api_key_file");
  if (node["api_key"]) {
    auto value = scalar(node, where, "api_key");
    if (!value.ok()) return value.error();
    route.api_key = *value;
  } else if (node["api_key_env"]) {
    auto variable = scalar(node, where, "api_key_env");
    if (!variable.ok()) return variable.error();
    std::optional<std::string> value = env(*variable);
    if (!value || value->empty()) {
      return fail("api_key_env: environment variable " + *variable + " is not set");
    }
    route.api_key = std::move(*value);
  } else if (node["api_key_file"]) {
    auto path = scalar(node, where, "api_key_file");
    if (!path.ok()) return path.error();
    auto text = read_small_file(*path, kMaxKeyFileBytes);
    if (!text.ok()) return fail("api_key_file: " + text.error().message);
    route.api_key = trim_line_end(std::move(*text));
    if (route.api_key.empty()) return fail("api_key_file: " + *path + " is empty");
  }
  if (auto valid = validate_inference_route(route, where); !valid.ok()) {
    wipe_secret(route.api_key);
    return valid.error();
  }
  return route;
}

}  // namespace

Result<InferenceRoutes> parse_inference_routes(std::string_view text, std::string_view source,
                                               const EnvLookup& env) {
  const std::string name(source.empty() ? "routes" : source);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return make_error(Errc::kParse, name + ": " + e.what());
  }
  try {
    if (!root.IsMap() || !root["routes"]) {
      return make_error(Errc::kInvalidArgument, name + ": expected a top-level 'routes' list");
    }
    const YAML::Node list = root["routes"];
    if (list.IsNull()) return InferenceRoutes{};  // `routes:` alone: clears them
    if (!list.IsSequence()) {
      return make_error(Errc::kInvalidArgument, name + ": 'routes' must be a list");
    }
    InferenceRoutes routes;
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = name + ": routes[" + std::to_string(i) + "]";
      auto route = parse_route(list[i], where, env);
      if (!route.ok()) {
        for (InferenceRoute& r : routes)
          wipe_secret(r.api_key);
        return route.error();
      }
      if (!names.insert(route->name).second) {
        for (InferenceRoute& r : routes)
          wipe_secret(r.api_key);
        wipe_secret(route->api_key);
        return make_error(Errc::kInvalidArgument,
                          where + ": duplicate route name '" + route->name + "'");
      }
      routes.push_back(std::move(*route));
    }
    return routes;
  } catch (const YAML::Exception& e) {
    return make_error(Errc::kParse, name + ": " + e.what());
  }
}

Result<InferenceRoutes> load_inference_routes(const std::string& path, const EnvLookup& env) {
  auto text = read_small_file(path, kMaxRoutesFileBytes);
  if (!text.ok()) return text.error();
  return parse_inference_routes(*text, path, env);
}

}  // namespace openshell::proxy
