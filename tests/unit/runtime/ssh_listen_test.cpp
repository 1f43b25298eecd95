// `--ssh` listen addresses (parse_ssh_listen): what the CLI accepts and what the server binds.
#include <catch2/catch.hpp>
#include <string>

#include "openshell/runtime/ssh_server.hpp"

using openshell::runtime::parse_ssh_listen;
using openshell::runtime::SshListenAddress;

TEST_CASE("unix:PATH is a socket path") {
  auto parsed = parse_ssh_listen("unix:/run/openshell/ssh/sock");
  REQUIRE(parsed.ok());
  CHECK(parsed->kind == SshListenAddress::Kind::kUnix);
  CHECK(parsed->path == "/run/openshell/ssh/sock");
  CHECK_FALSE(parse_ssh_listen("unix:").ok());
  CHECK_FALSE(parse_ssh_listen("unix:/" + std::string(200, 'x')).ok());
}

TEST_CASE("tcp:HOST:PORT takes IPv4, bracketed IPv6 and port 0") {
  auto v4 = parse_ssh_listen("tcp:127.0.0.1:2222");
  REQUIRE(v4.ok());
  CHECK(v4->kind == SshListenAddress::Kind::kTcp);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 2222);
  auto v6 = parse_ssh_listen("tcp:[::1]:0");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 0);
  CHECK(parse_ssh_listen("tcp:0.0.0.0:65535").ok());
}

TEST_CASE("malformed listen addresses are refused with the reason") {
  for (const char* text : {"", "ftp:x", "tcp:nonsense", "tcp:localhost:22", "tcp:::1:22",
                           "tcp:[127.0.0.1]:22", "tcp:127.0.0.1:", "tcp:127.0.0.1:65536",
                           "tcp:127.0.0.1:-1", "tcp:127.0.0.1:22x", "tcp::22"}) {
    INFO(text);
    auto parsed = parse_ssh_listen(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().message.find(text) != std::string::npos);
  }
}
