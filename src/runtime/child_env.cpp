// Building the child's environment and finding its program, in the caller before the spawn.
#include "openshell/runtime/child_env.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <map>

namespace openshell::runtime {
namespace {

// Proxy variables of spec §5.4 (no lowercase all_proxy, no FTP_PROXY: the reference sets none).
constexpr std::string_view kProxyVariables[] = {"ALL_PROXY",  "HTTP_PROXY",  "HTTPS_PROXY",
                                                "http_proxy", "https_proxy", "grpc_proxy"};
// CA variables: one bundle serves as both the extra CA (Node, Deno) and the full trust store.
constexpr std::string_view kCaVariables[] = {"SSL_CERT_FILE",       "REQUESTS_CA_BUNDLE",
                                             "CURL_CA_BUNDLE",      "GIT_SSL_CAINFO",
                                             "NODE_EXTRA_CA_CERTS", "DENO_CERT"};

using Env = std::map<std::string, std::string, std::less<>>;

void put(Env& env, std::string_view key, std::string_view value) {
  env.insert_or_assign(std::string(key), std::string(value));
}

void put_assignment(Env& env, std::string_view assignment) {
  const size_t equals = assignment.find('=');
  if (equals == std::string_view::npos || equals == 0) return;
  put(env, assignment.substr(0, equals), assignment.substr(equals + 1));
}

// A path as the child will see it from its working directory (the caller's own when empty).
std::string absolute(std::string path, const std::string& workdir) {
  if (!path.empty() && path.front() == '/') return path;
  std::string base = workdir;
  if (base.empty()) {
    char cwd[4096];
    base = ::getcwd(cwd, sizeof cwd) != nullptr ? cwd : "/";
  }
  if (path.starts_with("./")) path.erase(0, 2);
  return base + "/" + path;
}

bool is_executable_file(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
         (info.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0;
}

}  // namespace

bool inherited_variable_allowed(std::string_view key) {
  return key == "PATH" || key == "LANG" || key == "TERM" || key == "TZ" || key.starts_with("LC_");
}

Result<void> check_env_assignment(std::string_view assignment) {
  const size_t equals = assignment.find('=');
  if (equals == std::string_view::npos || equals == 0) {
    return make_error(Errc::kInvalidArgument,
                      "'" + std::string(assignment) + "' is not KEY=VALUE with a non-empty KEY");
  }
  if (assignment.find('\0') != std::string_view::npos) {
    return make_error(Errc::kInvalidArgument, "NUL byte in an --env value");
  }
  return {};
}

std::vector<std::string> build_child_env(const ChildEnvOptions& options) {
  Env env;
  for (const std::string& entry : options.inherited) {
    const size_t equals = entry.find('=');
    if (equals != std::string::npos && inherited_variable_allowed(entry.substr(0, equals))) {
      put_assignment(env, entry);
    }
  }
  if (!env.contains("PATH")) put(env, "PATH", kDefaultPath);
  if (!env.contains("TERM")) put(env, "TERM", options.tty ? "xterm-256color" : "dumb");
  put(env, "USER", options.user);
  put(env, "LOGNAME", options.user);
  put(env, "HOME", options.home);
  put(env, "SHELL", options.shell);
  for (const std::string& assignment : options.extra)
    put_assignment(env, assignment);

  // Ours, last: the child must reach the proxy and trust its CA whatever --env said.
  put(env, "OPENSHELL_SANDBOX", "1");
  if (options.proxy) {
    for (std::string_view key : kProxyVariables)
      put(env, key, kSandboxProxyUrl);
    put(env, "NO_PROXY", kSandboxNoProxy);
    put(env, "no_proxy", kSandboxNoProxy);
    put(env, "NODE_USE_ENV_PROXY", "1");
  }
  if (!options.ca_bundle.empty()) {
    for (std::string_view key : kCaVariables)
      put(env, key, options.ca_bundle);
  }

  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [key, value] : env) {
    std::string& entry = out.emplace_back(key);
    entry += '=';
    entry += value;
  }
  return out;
}

Result<std::string> resolve_program(const std::string& name, std::string_view path,
                                    const std::string& workdir) {
  if (name.empty()) return make_error(Errc::kInvalidArgument, "empty command name");
  if (name.find('/') != std::string::npos) {
    const std::string program = absolute(name, workdir);
    struct stat info {};
    if (::stat(program.c_str(), &info) != 0) {
      return make_error(Errc::kNotFound, name + ": no such file");
    }
    return program;
  }
  size_t start = 0;
  for (;;) {
    const size_t end = path.find(':', start);
    std::string_view dir =
        path.substr(start, end == std::string_view::npos ? path.npos : end - start);
    // An empty PATH entry means the working directory, as execvp has it.
    const std::string candidate =
        absolute(std::string(dir.empty() ? "." : dir) + "/" + name, workdir);
    if (is_executable_file(candidate)) return candidate;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return make_error(Errc::kNotFound, name + ": command not found in PATH " + std::string(path));
}

}  // namespace openshell::runtime
