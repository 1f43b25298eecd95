// The sandboxed program's environment (runtime-spec §5.4, adapted): an allowlist of the caller's
// variables, never its secrets; identity variables; --env; then the proxy and CA variables the
// runtime owns, last so nothing overrides them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::runtime {

// What the child sees as its proxy (the in-namespace listener).
inline constexpr std::string_view kSandboxProxyUrl = "http://127.0.0.1:3128";
inline constexpr std::string_view kSandboxNoProxy = "127.0.0.1,localhost,::1";
inline constexpr std::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

struct ChildEnvOptions {
  std::vector<std::string> inherited;  // the caller's environment, "KEY=VALUE"
  std::vector<std::string> extra;      // --env KEY=VALUE, in order (a later one wins)
  std::string user;                    // USER and LOGNAME
  std::string home;                    // HOME
  std::string shell = "/bin/sh";       // SHELL
  bool tty = false;                    // TERM defaults to xterm-256color, else dumb
  bool proxy = false;                  // set the proxy variables
  std::string ca_bundle;               // non-empty: set the CA variables to this file
};

// Sorted by key, one entry per key.
std::vector<std::string> build_child_env(const ChildEnvOptions& options);

// True for the caller's variables the child may see: PATH, LANG, LC_*, TERM, TZ.
bool inherited_variable_allowed(std::string_view key);

// Checks a --env argument: KEY=VALUE with a non-empty KEY made of no '=' or NUL.
Result<void> check_env_assignment(std::string_view assignment);

// The executable execve should run: `name` itself when it contains a '/' (relative to
// `workdir`), else the first executable regular file named so on `path` (the CHILD's PATH),
// the way execvp would search. kNotFound when there is none.
Result<std::string> resolve_program(const std::string& name, std::string_view path,
                                    const std::string& workdir);

}  // namespace openshell::runtime
