// The egress relay end to end on loopback: a forked client connects to a stand-in for the
// sandbox's listener, and a test "proxy" decodes the PROXY v2 header and echoes the payload.
#include "openshell/runtime/egress_relay.hpp"

#include <sys/un.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../temp_dir.hpp"
#include "loopback_sockets.hpp"
#include "openshell/core/log.hpp"
#include "openshell/core/proxy_protocol.hpp"
#include "sha256_file.hpp"

using openshell::core::ProxyDecodeOptions;
using openshell::core::ProxyDecodeResult;
using openshell::runtime::EgressRelay;
using openshell::runtime::EgressRelayOptions;
using openshell::runtime::EgressTarget;
using openshell::runtime::parse_network_proxy;
using openshell::test::ClientProcess;
using openshell::test::TestFd;
using Status = ProxyDecodeResult::Status;
namespace fs = std::filesystem;

namespace {

const std::vector<uint8_t> kKey = {'r', 'e', 'l', 'a', 'y', '-', 'k', 'e', 'y'};
constexpr char kPayload[] = "hello through the relay";

void set_receive_timeout(int fd, int seconds) {
  timeval timeout{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

// Client bodies (run in the forked child: syscalls only, no allocation).
int send_and_expect_echo(int socket, int /*release_fd*/) {
  set_receive_timeout(socket, 10);
  const std::size_t size = sizeof kPayload - 1;
  if (::write(socket, kPayload, size) != static_cast<ssize_t>(size)) return 1;
  ::shutdown(socket, SHUT_WR);  // the relay must pass the half-close on and still echo
  char echoed[sizeof kPayload] = {};
  std::size_t got = 0;
  for (;;) {
    const ssize_t n = ::read(socket, echoed + got, sizeof echoed - got);
    if (n < 0) return 2;
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got == sizeof echoed) return 3;  // more than was sent
  }
  return got == size && std::memcmp(echoed, kPayload, size) == 0 ? 0 : 4;
}

int expect_closed_without_data(int socket, int /*release_fd*/) {
  set_receive_timeout(socket, 10);
  char byte = 0;
  const ssize_t n = ::read(socket, &byte, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 1;
}

// The stand-in proxy: accepts connections one at a time, decodes the header (with `key` when
// given), records it, then echoes everything after it until EOF.
class ProxyReceiver {
 public:
  ProxyReceiver(TestFd listener, std::vector<uint8_t> key)
      : listener_(std::move(listener)), key_(std::move(key)), thread_([this] { run(); }) {}

  // Where the relay should connect, for a TCP receiver.
  EgressTarget tcp_target() const {
    EgressTarget target;
    target.host = "127.0.0.1";
    target.port = openshell::test::local_endpoint(listener_.get()).port();
    return target;
  }
  ~ProxyReceiver() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes accept()
    thread_.join();
  }
  ProxyReceiver(const ProxyReceiver&) = delete;
  ProxyReceiver& operator=(const ProxyReceiver&) = delete;

  std::vector<ProxyDecodeResult> results() {
    std::lock_guard lock(mutex_);
    return results_;
  }
  std::vector<std::vector<uint8_t>> raw_headers() {
    std::lock_guard lock(mutex_);
    return raw_;
  }
  // Waits until `count` headers have arrived (the relay writes them asynchronously).
  bool wait_for(std::size_t count) {
    for (int i = 0; i < 500; ++i) {
      if (results().size() >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  void run() {
    for (;;) {
      TestFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (connection.get() < 0) return;
      serve(connection.get());
    }
  }

  void serve(int fd) {
    set_receive_timeout(fd, 10);
    std::vector<uint8_t> buffered;
    ProxyDecodeOptions options;
    options.key = key_;
    ProxyDecodeResult decoded;
    uint8_t chunk[4096];
    while (decoded.status == Status::kNeedMore) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      buffered.insert(buffered.end(), chunk, chunk + n);
      decoded = openshell::core::decode_proxy_header(buffered, options);
    }
    {
      std::lock_guard lock(mutex_);
      results_.push_back(decoded);
      raw_.emplace_back(buffered.begin(),
                        buffered.begin() + static_cast<std::ptrdiff_t>(decoded.consumed));
    }
    if (decoded.status != Status::kComplete) return;
    const std::size_t rest = buffered.size() - decoded.consumed;
    if (rest > 0 && ::write(fd, buffered.data() + decoded.consumed, rest) < 0) return;
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      if (::write(fd, chunk, static_cast<std::size_t>(n)) < 0) return;
    }
    ::shutdown(fd, SHUT_WR);
  }

  TestFd listener_;
  std::vector<uint8_t> key_;
  std::mutex mutex_;
  std::vector<ProxyDecodeResult> results_;
  std::vector<std::vector<uint8_t>> raw_;
  std::thread thread_;
};

TestFd listen_unix(const std::string& path) {
  TestFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(fd.get(), 16) == 0);
  return fd;
}

// Log lines, for checking what the relay says.
struct CapturedLog {
  CapturedLog() : logger(openshell::core::Level::kDebug) {
    logger.add_sink(std::make_shared<openshell::core::CallbackSink>(
        [this](const openshell::core::Event& event) {
          std::lock_guard lock(mutex);
          lines.push_back(event.message);
        }));
  }
  bool contains(const std::string& text) {
    std::lock_guard lock(mutex);
    for (const std::string& line : lines) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
  openshell::core::Logger logger;
  std::mutex mutex;
  std::vector<std::string> lines;
};

EgressRelayOptions relay_options(const EgressTarget& target, std::vector<uint8_t> key) {
  EgressRelayOptions options;
  options.target = target;
  options.identity_key = std::move(key);
  options.netns_pid = ::getpid();
  options.root_pid = ::getpid();
  return options;
}

// The stand-in for the sandbox's in-namespace listener, and its address.
struct SandboxListener {
  SandboxListener() : fd(openshell::test::listen_loopback()) {
    REQUIRE(fd.get() >= 0);
    endpoint = openshell::test::local_endpoint(fd.get());
  }
  TestFd fd;
  asio::ip::tcp::endpoint endpoint;
};

}  // namespace

TEST_CASE("parse_network_proxy") {
  auto tcp = parse_network_proxy("proxy:tcp://proxy.internal:3128");
  REQUIRE(tcp.ok());
  CHECK(tcp->kind == EgressTarget::Kind::kTcp);
  CHECK(tcp->host == "proxy.internal");
  CHECK(tcp->port == 3128);
  CHECK(tcp->text() == "proxy:tcp://proxy.internal:3128");

  auto v4 = parse_network_proxy("proxy:tcp://10.0.0.7:65535");
  REQUIRE(v4.ok());
  CHECK(v4->host == "10.0.0.7");
  CHECK(v4->port == 65535);

  auto v6 = parse_network_proxy("proxy:tcp://[fd00::1]:8080");
  REQUIRE(v6.ok());
  CHECK(v6->host == "fd00::1");
  CHECK(v6->port == 8080);
  CHECK(v6->text() == "proxy:tcp://[fd00::1]:8080");

  auto unix_socket = parse_network_proxy("proxy:unix:/run/openshell/proxy.sock");
  REQUIRE(unix_socket.ok());
  CHECK(unix_socket->kind == EgressTarget::Kind::kUnix);
  CHECK(unix_socket->path == "/run/openshell/proxy.sock");
  CHECK(unix_socket->text() == "proxy:unix:/run/openshell/proxy.sock");

  for (const char* bad : {"",
                          "proxy",
                          "proxy:",
                          "tcp://h:1",
                          "proxy:tcp://",
                          "proxy:tcp://h",
                          "proxy:tcp://h:",
                          "proxy:tcp://:3128",
                          "proxy:tcp://h:0",
                          "proxy:tcp://h:65536",
                          "proxy:tcp://h:+80",
                          "proxy:tcp://h:80/",
                          "proxy:tcp://user@h:80",
                          "proxy:tcp://fd00::1:80",
                          "proxy:tcp://[fd00::1:80",
                          "proxy:tcp://[fd00::1]80",
                          "proxy:tcp://[nope]:80",
                          "proxy:http://h:80",
                          "proxy:unix:",
                          "proxy:unix:relative/path",
                          "proxy:udp://h:53"}) {
    INFO(bad);
    auto parsed = parse_network_proxy(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code == openshell::Errc::kInvalidArgument);
    CHECK(parsed.error().message.find("proxy:tcp://HOST:PORT or proxy:unix:/ABSOLUTE/PATH") !=
          std::string::npos);
  }
  CHECK_FALSE(parse_network_proxy("proxy:unix:/" + std::string(107, 'a')).ok());
  CHECK(parse_network_proxy("proxy:unix:/" + std::string(106, 'a')).ok());
}

TEST_CASE("egress relay over TCP: authenticated identity, echo and half-close") {
  CapturedLog log;
  ProxyReceiver receiver(openshell::test::listen_loopback(), kKey);
  SandboxListener sandbox;
  auto relay = EgressRelay::start(sandbox.fd.release(), relay_options(receiver.tcp_target(), kKey),
                                  log.logger);
  REQUIRE(relay.ok());

  ClientProcess child(sandbox.endpoint, send_and_expect_echo);
  const pid_t child_pid = child.pid();
  CHECK(child.wait_exit() == 0);

  REQUIRE(receiver.wait_for(1));
  const ProxyDecodeResult decoded = receiver.results().front();
  INFO(decoded.reason);
  REQUIRE(decoded.status == Status::kComplete);
  const openshell::core::ProxyHeader& header = decoded.header;
  CHECK(header.authenticated);  // the receiver decoded with the key: HMAC and timestamp passed
  CHECK(header.family == openshell::core::ProxyFamily::kTcp4);
  CHECK(header.pid == static_cast<uint32_t>(child_pid));
  CHECK(header.exe_path == fs::read_symlink("/proc/self/exe").string());
  CHECK(header.exe_sha256 == openshell::test::sha256_of_file("/proc/self/exe"));
  // Source: the child's end; destination: the sandbox listener.
  CHECK(std::vector<uint8_t>(header.source.ip.begin(), header.source.ip.begin() + 4) ==
        std::vector<uint8_t>{127, 0, 0, 1});
  CHECK(header.source.port != 0);
  CHECK(header.source.port != sandbox.endpoint.port());
  CHECK(header.destination.port == sandbox.endpoint.port());
  CHECK(relay.value()->accepted() == 1);
  CHECK(relay.value()->refused() == 0);
  CHECK_FALSE(log.contains("without an HMAC key"));
}

TEST_CASE("egress relay to proxy:unix: without a key: identity, no HMAC") {
  CapturedLog log;
  openshell::test::TempDir dir("openshell-relay");
  const std::string path = (dir.path() / "proxy.sock").string();
  ProxyReceiver receiver(listen_unix(path), {});
  SandboxListener sandbox;
  auto target = parse_network_proxy("proxy:unix:" + path);
  REQUIRE(target.ok());
  auto relay = EgressRelay::start(sandbox.fd.release(), relay_options(*target, {}), log.logger);
  REQUIRE(relay.ok());

  ClientProcess child(sandbox.endpoint, send_and_expect_echo);
  const pid_t child_pid = child.pid();
  CHECK(child.wait_exit() == 0);
  REQUIRE(receiver.wait_for(1));
  const ProxyDecodeResult decoded = receiver.results().front();
  REQUIRE(decoded.status == Status::kComplete);
  CHECK_FALSE(decoded.header.authenticated);
  CHECK(decoded.header.pid == static_cast<uint32_t>(child_pid));
  CHECK(decoded.header.timestamp_ms.has_value());
  // A proxy that expects a key refuses this header.
  ProxyDecodeOptions keyed;
  keyed.key = kKey;
  const ProxyDecodeResult strict =
      openshell::core::decode_proxy_header(receiver.raw_headers().front(), keyed);
  CHECK(strict.status == Status::kInvalid);
}

TEST_CASE("egress relay warns when identity goes over TCP without a key") {
  CapturedLog log;
  ProxyReceiver receiver(openshell::test::listen_loopback(), {});
  SandboxListener sandbox;
  auto relay = EgressRelay::start(sandbox.fd.release(), relay_options(receiver.tcp_target(), {}),
                                  log.logger);
  REQUIRE(relay.ok());
  CHECK(log.contains("without an HMAC key"));
}

TEST_CASE("egress relay fails closed when the caller cannot be identified") {
  CapturedLog log;
  ProxyReceiver receiver(openshell::test::listen_loopback(), kKey);
  SandboxListener sandbox;
  EgressRelayOptions options = relay_options(receiver.tcp_target(), kKey);
  options.netns_pid = 0;  // "not yet spawned": every lookup fails
  auto relay = EgressRelay::start(sandbox.fd.release(), std::move(options), log.logger);
  REQUIRE(relay.ok());

  ClientProcess child(sandbox.endpoint, expect_closed_without_data);
  CHECK(child.wait_exit() == 0);
  CHECK(relay.value()->refused() == 1);
  CHECK(log.contains("entrypoint process not yet spawned"));
  CHECK(receiver.results().empty());  // nothing reached the proxy
}

TEST_CASE("egress relay closes the client when the proxy is unreachable") {
  CapturedLog log;
  EgressTarget target;
  target.host = "localhost";  // through the resolver
  {
    TestFd closed = openshell::test::listen_loopback();
    target.port = openshell::test::local_endpoint(closed.get()).port();
  }  // nothing listens there any more
  SandboxListener sandbox;
  auto relay = EgressRelay::start(sandbox.fd.release(), relay_options(target, kKey), log.logger);
  REQUIRE(relay.ok());
  ClientProcess child(sandbox.endpoint, expect_closed_without_data);
  CHECK(child.wait_exit() == 0);
  CHECK(log.contains("cannot connect to proxy:tcp://localhost:"));
}

TEST_CASE("egress relay closes idle connections, and stop() closes live ones") {
  CapturedLog log;
  ProxyReceiver receiver(openshell::test::listen_loopback(), kKey);
  SandboxListener sandbox;
  EgressRelayOptions options = relay_options(receiver.tcp_target(), kKey);
  SECTION("idle timeout") {
    options.idle_timeout = std::chrono::milliseconds(300);
    auto relay = EgressRelay::start(sandbox.fd.release(), options, log.logger);
    REQUIRE(relay.ok());
    const auto start = std::chrono::steady_clock::now();
    ClientProcess child(sandbox.endpoint, expect_closed_without_data);
    CHECK(child.wait_exit() == 0);
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(300));
    REQUIRE(receiver.wait_for(1));
    CHECK(receiver.results().front().status == Status::kComplete);
  }
  SECTION("stop") {
    auto relay = EgressRelay::start(sandbox.fd.release(), options, log.logger);
    REQUIRE(relay.ok());
    ClientProcess child(sandbox.endpoint, expect_closed_without_data);
    REQUIRE(receiver.wait_for(1));  // connected and relaying
    relay.value()->stop();
    CHECK(child.wait_exit() == 0);
    relay.value()->stop();  // idempotent
    // The listener is closed too: new connections are refused by the kernel.
    CHECK(openshell::test::connect_to(sandbox.endpoint) < 0);
  }
}

TEST_CASE("egress relay refuses a socket that is not listening") {
  TestFd plain(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CapturedLog log;
  auto relay = EgressRelay::start(plain.release(), EgressRelayOptions{}, log.logger);
  REQUIRE_FALSE(relay.ok());
  CHECK(relay.error().message.find("not a listening TCP socket") != std::string::npos);
  CHECK_FALSE(EgressRelay::start(-1, EgressRelayOptions{}, log.logger).ok());
}
