// The SSH server's pure pieces: the detach sequence, the env allowlist, loopback-only forward
// destinations, session environments, and the main session's replay, lease and bounds (on a
// real PTY).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "openshell/runtime/main_session.hpp"
#include "openshell/runtime/pty.hpp"
#include "ssh_forward.hpp"
#include "ssh_launcher.hpp"
#include "ssh_session_channel.hpp"

namespace rt = openshell::runtime;
namespace ssh = openshell::runtime::ssh;

TEST_CASE("Ctrl-P Ctrl-Q detaches, also split across reads; a lone Ctrl-P passes on") {
  ssh::DetachScanner whole;
  CHECK(whole.scan("ls\n\x10\x11rest") == "ls\n");
  CHECK(whole.detached());

  ssh::DetachScanner split;
  CHECK(split.scan("a\x10") == "a");
  CHECK_FALSE(split.detached());
  CHECK(split.scan("\x11"
                   "b") == "");
  CHECK(split.detached());

  ssh::DetachScanner lone;
  CHECK(lone.scan("\x10x") == "\x10x");
  CHECK(lone.scan("\x10\x10") == "\x10");
  CHECK(lone.scan("\x11") == "");
  CHECK(lone.detached());
}

TEST_CASE("env requests: locale and display variables only") {
  for (const char* name : {"LANG", "LC_ALL", "LC_CTYPE", "TZ", "COLORTERM", "TERM_PROGRAM"})
    CHECK(ssh::env_allowed(name));
  for (const char* name : {"LD_PRELOAD", "PATH", "HTTPS_PROXY", "http_proxy", "SSL_CERT_FILE",
                           "HOME", "BASH_ENV", "LCX", ""})
    CHECK_FALSE(ssh::env_allowed(name));
}

TEST_CASE("forward destinations: the loopback in every spelling, nothing else") {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "0:0:0:0:0:0:0:1",
                           "::ffff:127.0.0.1", "[::ffff:127.0.0.9]"}) {
    INFO(host);
    CHECK(ssh::loopback_destination(host, 8080).has_value());
  }
  for (const char* host : {"10.0.0.1", "0.0.0.0", "169.254.169.254", "::", "::ffff:10.0.0.1",
                           "example.com", "localhost.", "127.0.0.1.nip.io", "", "[::1"}) {
    INFO(host);
    CHECK_FALSE(ssh::loopback_destination(host, 8080).has_value());
  }
  CHECK_FALSE(ssh::loopback_destination("127.0.0.1", 0).has_value());
  CHECK_FALSE(ssh::loopback_destination("127.0.0.1", 65536).has_value());
  const auto v4 = ssh::loopback_destination("localhost", 443);
  REQUIRE(v4);
  const auto* address = reinterpret_cast<const sockaddr_in*>(&*v4);
  CHECK(address->sin_family == AF_INET);
  CHECK(ntohs(address->sin_port) == 443);
}

TEST_CASE("session environments: overrides replace keys, others are added") {
  const auto merged =
      ssh::merge_environment({"PATH=/bin", "LANG=C", "K=1"}, {"LANG=de_DE.UTF-8", "TERM=xterm"});
  CHECK(merged == std::vector<std::string>{"PATH=/bin", "LANG=de_DE.UTF-8", "K=1", "TERM=xterm"});
}

namespace {

bool readable(int fd) {
  pollfd ready{fd, POLLIN, 0};
  return ::poll(&ready, 1, 0) == 1;
}

}  // namespace

TEST_CASE("main session: replay, live output, one stdin lease, exit after the last byte") {
  auto pty = rt::open_pty();
  REQUIRE(pty.ok());
  rt::MainSession main(pty->master.get());
  main.publish("before\n");

  auto first = main.attach(false);
  CHECK(readable(first->wake_fd()));
  CHECK(first->take() == "before\n");
  CHECK_FALSE(readable(first->wake_fd()));
  CHECK(first->owns_stdin());

  auto second = main.attach(false);
  CHECK_FALSE(second->owns_stdin());  // the lease is taken
  CHECK(second->take() == "before\n");
  auto watcher = main.attach(true);
  CHECK_FALSE(watcher->owns_stdin());

  main.publish("live");
  CHECK(readable(second->wake_fd()));
  CHECK(first->take() == "live");
  CHECK(second->take() == "live");

  // Input reaches the PTY from the lease holder only.
  CHECK(first->write_input("typed\n") == 6);
  CHECK(second->write_input("dropped\n") == 8);
  char buffer[64] = {};
  const ssize_t got = ::read(pty->slave.get(), buffer, sizeof buffer);
  CHECK(std::string(buffer, got > 0 ? static_cast<size_t>(got) : 0) == "typed\n");

  first.reset();  // the lease is free again for the next attachment
  auto third = main.attach(false);
  CHECK(third->owns_stdin());

  main.publish("last");
  main.finish(7);
  CHECK_FALSE(third->exit_code().has_value());  // "last" not taken yet
  third->take();
  CHECK(third->exit_code() == 7);
}

TEST_CASE("main session: an attachment that falls behind is told so; the replay stays bounded") {
  auto pty = rt::open_pty();
  REQUIRE(pty.ok());
  rt::MainSession main(pty->master.get());
  auto slow = main.attach(false);
  const std::string chunk(64 * 1024, 'x');
  for (size_t sent = 0; sent <= 2 * rt::kMainOutputRetained; sent += chunk.size())
    main.publish(chunk);
  CHECK(slow->fell_behind());
  auto late = main.attach(false);
  CHECK(late->take().size() == rt::kMainOutputRetained);
  CHECK_FALSE(late->fell_behind());
}
