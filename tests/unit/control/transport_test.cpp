// What only the gRPC transport has: tokens, protocol versions, socket permissions and ownership
// of the socket path, and the error a dead endpoint gives.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "harness.hpp"

using openshell::Errc;
using namespace openshell::control;
using namespace openshell::control::test;

TEST_CASE("tcp: a missing or wrong token is refused in every call", "[control][auth]") {
  Harness h(Transport::kTcp);
  for (const std::string token : {"", "wrong", "s3cret-token-but-longer", "s3cret-tokeN"}) {
    INFO("token '" << token << "'");
    GrpcProxyControl client(h.control_server->endpoint(), token);
    auto status = client.status();
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code == Errc::kPermission);
    auto pushed = client.push_policy({"version: 1\n", openshell::proxy::PolicyFormat::kAuto, ""});
    REQUIRE_FALSE(pushed.ok());
    CHECK(pushed.error().code == Errc::kPermission);
    auto watched = client.watch_denials({}, [](const auto&) { return false; });
    REQUIRE_FALSE(watched.ok());
    CHECK(watched.error().code == Errc::kPermission);
  }
  CHECK(h.store.generation() == 0);
}

TEST_CASE("tcp: the server refuses to start without a token", "[control][auth]") {
  Harness h(Transport::kLocal);
  auto started = ControlServer::start({*parse_endpoint("tcp:127.0.0.1:0"), "", {}}, *h.local);
  REQUIRE_FALSE(started.ok());
  CHECK_THAT(started.error().message, Catch::Contains("no unauthenticated TCP control"));
}

TEST_CASE("an unsupported protocol major version is refused clearly", "[control][version]") {
  Harness h(Transport::kUnix);
  h.client->set_protocol_version(2, 0);
  auto status = h.client->status();
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == Errc::kUnavailable);
  CHECK(status.error().message ==
        "unsupported control protocol version 2.0: this server speaks 1.x");
  h.client->set_protocol_version(1, 7);  // a newer minor is fine
  CHECK(h.client->status().ok());
}

TEST_CASE("unix: socket 0600 in a 0700 directory, removed on shutdown", "[control][unix]") {
  Harness h(Transport::kUnix);
  const std::string path = h.control_server->endpoint().address;
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK(S_ISSOCK(info.st_mode));
  CHECK((info.st_mode & 0777) == 0600);
  REQUIRE(::stat((h.dir + "/sock").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0700);

  // A second server on a path a live server holds is refused, and the live one keeps working.
  auto second = ControlServer::start({h.control_server->endpoint(), "", {}}, *h.local);
  REQUIRE_FALSE(second.ok());
  CHECK_THAT(second.error().message, Catch::Contains("in use by a running server"));
  CHECK(h.client->status().ok());

  h.control_server->shutdown();
  CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("unix: a stale socket file is replaced; a non-socket is refused", "[control][unix]") {
  Harness h(Transport::kLocal);
  const std::string path = h.dir + "/stale.sock";
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
    ::close(fd);  // bound, never listening: what a crashed server leaves behind
  }
  auto started = ControlServer::start({*parse_endpoint("unix:" + path), "", {}}, *h.local);
  REQUIRE(started.ok());
  GrpcProxyControl client((*started)->endpoint(), "");
  CHECK(client.status().ok());
  (*started)->shutdown();

  const std::string file = h.dir + "/regular";
  std::ofstream(file) << "x";
  auto refused = ControlServer::start({*parse_endpoint("unix:" + file), "", {}}, *h.local);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message, Catch::Contains("not a socket"));
}

TEST_CASE("a dead endpoint is a connection error naming it", "[control][client]") {
  GrpcProxyControl client(*parse_endpoint("unix:/nonexistent/openshell/control.sock"), "");
  auto status = client.status();
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == Errc::kIo);
  CHECK_THAT(status.error().message,
             Catch::Contains("cannot connect to control endpoint unix:/nonexistent/openshell/"
                             "control.sock"));
}

TEST_CASE("endpoints and token files", "[control][endpoint]") {
  CHECK(parse_endpoint("unix:/run/x.sock")->grpc_target() == "unix:/run/x.sock");
  CHECK(parse_endpoint("tcp:127.0.0.1:7070")->grpc_target() == "ipv4:127.0.0.1:7070");
  CHECK(parse_endpoint("tcp:[::1]:7070")->grpc_target() == "ipv6:[::1]:7070");
  CHECK_FALSE(parse_endpoint("unix:relative").ok());
  CHECK_FALSE(parse_endpoint("tcp:7070").ok());
  CHECK_FALSE(parse_endpoint("http://x").ok());

  char pattern[] = "/tmp/openshell-token-XXXXXX";
  const int fd = ::mkstemp(pattern);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(pattern) << "abc\n";
  CHECK(*read_token_file(pattern) == "abc");
  std::ofstream(pattern) << "abc\r\n";
  CHECK(*read_token_file(pattern) == "abc");
  std::ofstream(pattern) << "\n";
  CHECK_FALSE(read_token_file(pattern).ok());
  ::unlink(pattern);
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
}
