// The child's environment (runtime-spec §5.4 adapted) and program resolution.
#include "openshell/runtime/child_env.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using openshell::runtime::build_child_env;
using openshell::runtime::check_env_assignment;
using openshell::runtime::ChildEnvOptions;
using openshell::runtime::resolve_program;

namespace {

std::string value_of(const std::vector<std::string>& env, const std::string& key) {
  for (const std::string& entry : env) {
    if (entry.rfind(key + "=", 0) == 0) return entry.substr(key.size() + 1);
  }
  return "<unset>";
}

ChildEnvOptions basic() {
  ChildEnvOptions options;
  options.inherited = {"PATH=/opt/bin:/usr/bin",
                       "AWS_SECRET_ACCESS_KEY=leak",
                       "OPENSHELL_SANDBOX_TOKEN=leak",
                       "LC_ALL=C",
                       "LANG=C.UTF-8",
                       "TZ=UTC",
                       "HOME=/root",
                       "SSH_AUTH_SOCK=/run/agent"};
  options.user = "nobody";
  options.home = "/tmp";
  return options;
}

}  // namespace

TEST_CASE("only allowlisted variables of the caller reach the child") {
  const auto env = build_child_env(basic());
  CHECK(value_of(env, "PATH") == "/opt/bin:/usr/bin");
  CHECK(value_of(env, "LC_ALL") == "C");
  CHECK(value_of(env, "LANG") == "C.UTF-8");
  CHECK(value_of(env, "TZ") == "UTC");
  CHECK(value_of(env, "AWS_SECRET_ACCESS_KEY") == "<unset>");
  CHECK(value_of(env, "OPENSHELL_SANDBOX_TOKEN") == "<unset>");
  CHECK(value_of(env, "SSH_AUTH_SOCK") == "<unset>");
  CHECK(value_of(env, "HOME") == "/tmp");  // ours, not the caller's
  CHECK(value_of(env, "USER") == "nobody");
  CHECK(value_of(env, "LOGNAME") == "nobody");
  CHECK(value_of(env, "OPENSHELL_SANDBOX") == "1");
  CHECK(value_of(env, "TERM") == "dumb");
  CHECK(value_of(env, "HTTP_PROXY") == "<unset>");
  CHECK(std::is_sorted(env.begin(), env.end()));
}

TEST_CASE("defaults fill what the caller lacks") {
  ChildEnvOptions options;
  options.tty = true;
  const auto env = build_child_env(options);
  CHECK(value_of(env, "PATH") == "/usr/local/bin:/usr/bin:/bin");
  CHECK(value_of(env, "TERM") == "xterm-256color");
}

TEST_CASE("--env overrides the allowlist but never the runtime's own variables") {
  ChildEnvOptions options = basic();
  options.extra = {"TZ=Europe/Paris",     "EXTRA=a=b",        "HTTP_PROXY=http://evil:1",
                   "OPENSHELL_SANDBOX=0", "SSL_CERT_FILE=/x", "EXTRA=last"};
  options.proxy = true;
  options.ca_bundle = "/etc/ca.pem";
  const auto env = build_child_env(options);
  CHECK(value_of(env, "TZ") == "Europe/Paris");
  CHECK(value_of(env, "EXTRA") == "last");
  CHECK(value_of(env, "OPENSHELL_SANDBOX") == "1");
  for (const char* key :
       {"ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "grpc_proxy"}) {
    CHECK(value_of(env, key) == "http://127.0.0.1:3128");
  }
  CHECK(value_of(env, "NO_PROXY") == "127.0.0.1,localhost,::1");
  CHECK(value_of(env, "no_proxy") == "127.0.0.1,localhost,::1");
  CHECK(value_of(env, "NODE_USE_ENV_PROXY") == "1");
  for (const char* key : {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                          "NODE_EXTRA_CA_CERTS", "DENO_CERT"}) {
    CHECK(value_of(env, key) == "/etc/ca.pem");
  }
}

TEST_CASE("--env assignments are checked") {
  CHECK(check_env_assignment("A=1").ok());
  CHECK(check_env_assignment("A=").ok());
  CHECK_FALSE(check_env_assignment("A").ok());
  CHECK_FALSE(check_env_assignment("=1").ok());
  CHECK_FALSE(check_env_assignment(std::string("A=\0b", 4)).ok());
}

TEST_CASE("programs resolve through the child's PATH") {
  auto sh = resolve_program("sh", "/nonexistent:/bin:/usr/bin", "/");
  REQUIRE(sh.ok());
  CHECK(*sh == "/bin/sh");
  auto absolute = resolve_program("/bin/true", "", "/");
  REQUIRE(absolute.ok());
  CHECK(*absolute == "/bin/true");
  auto relative = resolve_program("./bin/true", "", "/usr");
  REQUIRE(relative.ok());
  CHECK(*relative == "/usr/bin/true");
  // Not executable, or not there at all.
  CHECK_FALSE(resolve_program("passwd", "/etc", "/").ok());
  auto missing = resolve_program("no-such-program", "/bin:/usr/bin", "/");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("not found") != std::string::npos);
  CHECK_FALSE(resolve_program("/nonexistent/x", "/bin", "/").ok());
}
