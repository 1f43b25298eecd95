// Binary identity from procfs: /proc/net/tcp parsing, a real loopback connection from a forked
// child, the TOFU hash cache, " (deleted)" handling and integrity violations.
#include "openshell/runtime/identity.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bit>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../temp_dir.hpp"
#include "loopback_sockets.hpp"
#include "sha256_file.hpp"

using openshell::Errc;
using openshell::runtime::ConnectOwners;
using openshell::runtime::IdentityResolver;
using openshell::runtime::parse_proc_net_tcp_row;
using openshell::runtime::ProcessIdentity;
using openshell::runtime::Sha256Digest;
using openshell::runtime::SocketDiag;
using openshell::runtime::UniqueFd;
using openshell::test::ClientProcess;
using openshell::test::TestFd;
namespace fs = std::filesystem;

namespace {

std::string self_exe() {
  return fs::read_symlink("/proc/self/exe").string();
}

// Accepts one connection: returns the accepted fd and fills the (client, server) tuple.
TestFd accept_one(int listener, asio::ip::tcp::endpoint& client, asio::ip::tcp::endpoint& server) {
  TestFd accepted(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(accepted.get() >= 0);
  client = openshell::test::peer_endpoint(accepted.get());
  server = openshell::test::local_endpoint(accepted.get());
  return accepted;
}

// Retries until the child has exec'd `exe` (identify may run between connect and exec).
openshell::Result<ProcessIdentity> identify_when(IdentityResolver& resolver,
                                                 const asio::ip::tcp::endpoint& client,
                                                 const asio::ip::tcp::endpoint& server,
                                                 const std::string& exe) {
  for (int attempt = 0;; ++attempt) {
    auto identity = resolver.identify(client, server);
    // Mid-execve the kernel already shows the new exe while the argument area is not set up
    // yet (cmdline reads empty): settled once both are the new program's.
    const bool settled = !identity.ok() ? identity.error().code == Errc::kPermission
                                        : identity->exe == exe && !identity->cmdline.empty();
    if (settled || attempt == 250) return identity;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

TEST_CASE("/proc/net/tcp rows: both byte orders of addresses and ports") {
  if constexpr (std::endian::native != std::endian::little) return;  // vectors from x86/arm64
  SECTION("IPv4") {
    const auto row = parse_proc_net_tcp_row(
        "   3: 0100007F:0C38 0200007F:A028 01 00000000:00000000 00:00000000 00000000  1000"
        "        0 123456 1 0000000000000000 20 4 30 10 -1");
    REQUIRE(row);
    CHECK(row->local == asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 3128));
    CHECK(row->remote == asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.2"), 41000));
    CHECK(row->state == 0x01);
    CHECK(row->inode == 123456u);
  }
  SECTION("IPv6, and IPv4-mapped IPv6 comes back as IPv4") {
    const auto row = parse_proc_net_tcp_row(
        "   0: B80D0120000000000000000001000000:01BB 0000000000000000FFFF00000100007F:A028 0A "
        "00000000:00000000 00:00000000 00000000     0        0 42 1 0000000000000000 100 0 0 "
        "10 0");
    REQUIRE(row);
    CHECK(row->local == asio::ip::tcp::endpoint(asio::ip::make_address("2001:db8::1"), 443));
    CHECK(row->remote == asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 41000));
    CHECK(row->state == 0x0A);
    CHECK(row->inode == 42u);
  }
  SECTION("heading and malformed lines") {
    CHECK_FALSE(parse_proc_net_tcp_row(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode"));
    CHECK_FALSE(parse_proc_net_tcp_row(""));
    CHECK_FALSE(parse_proc_net_tcp_row("   0: 0100007F:0C38 0100007F 01 0 0 0 0 0 1"));
    CHECK_FALSE(parse_proc_net_tcp_row("   0: 0100007G:0C38 0100007F:0001 01 0 0 0 0 0 1"));
    CHECK_FALSE(parse_proc_net_tcp_row("   0: 0100007F:10C38 0100007F:0001 01 0 0 0 0 0 1"));
  }
}

TEST_CASE("identify a forked child's loopback connection") {
  const bool v6 = GENERATE(false, true);
  TestFd listener = openshell::test::listen_loopback(v6);
  if (listener.get() < 0) {
    WARN("no " << (v6 ? "IPv6" : "IPv4") << " loopback here; skipped");
    return;
  }
  ClientProcess child(openshell::test::local_endpoint(listener.get()));
  asio::ip::tcp::endpoint client;
  asio::ip::tcp::endpoint server;
  TestFd accepted = accept_one(listener.get(), client, server);

  IdentityResolver resolver(::getpid(), ::getpid());
  auto identity = resolver.identify(client, server);
  REQUIRE(identity.ok());
  CHECK(identity->pid == child.pid());
  CHECK(identity->exe == self_exe());  // forked, not exec'd: the test binary
  CHECK(identity->exe_sha256 == openshell::test::sha256_of_file("/proc/self/exe"));
  REQUIRE(identity->ancestors.size() == 1);  // the root (this process), and never beyond it
  CHECK(identity->ancestors[0].pid == ::getpid());
  CHECK(identity->ancestors[0].exe == self_exe());
  REQUIRE_FALSE(identity->cmdline.empty());
  CHECK(fs::path(identity->cmdline[0]).filename() == fs::path(self_exe()).filename());
  // Owner and ancestor are the same file: one hash.
  CHECK(resolver.hashes_computed() == 1);

  SECTION("a second lookup is a cache hit") {
    auto again = resolver.identify(client, server);
    REQUIRE(again.ok());
    CHECK(again->exe_sha256 == identity->exe_sha256);
    CHECK(resolver.hashes_computed() == 1);
  }
  SECTION("the server end is not the client end") {
    auto reversed = resolver.identify(server, client);
    // The accepted socket belongs to this process, the root: it is found, and it is us.
    REQUIRE(reversed.ok());
    CHECK(reversed->pid == ::getpid());
    CHECK(reversed->ancestors.empty());
  }
}

TEST_CASE("socket diagnostics and connect owners find the same identity, faster") {
  TestFd listener = openshell::test::listen_loopback(false);
  REQUIRE(listener.get() >= 0);
  ClientProcess child(openshell::test::local_endpoint(listener.get()));
  asio::ip::tcp::endpoint client;
  asio::ip::tcp::endpoint server;
  TestFd accepted = accept_one(listener.get(), client, server);

  // This test's own network namespace: the diag socket sees the sockets it made.
  auto diag = std::make_shared<SocketDiag>(
      UniqueFd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)));
  const auto inode = diag->inode_of(client, server);
  REQUIRE(inode);
  CHECK(*inode != 0);
  CHECK(diag->inode_of(server, client) != inode);  // the other end is another socket
  const asio::ip::tcp::endpoint nowhere(asio::ip::make_address("127.0.0.1"), 1);
  CHECK_FALSE(diag->inode_of(nowhere, server));

  auto owners = std::make_shared<ConnectOwners>();
  SECTION("the recorded connector is the owner") {
    owners->record(*inode, child.pid());
    IdentityResolver resolver(::getpid(), ::getpid(), diag, owners);
    auto identity = resolver.identify(client, server);
    REQUIRE(identity.ok());
    CHECK(identity->pid == child.pid());
    CHECK(identity->exe == self_exe());
  }
  SECTION("a recorded pid that does not hold the socket is not believed") {
    owners->record(*inode, ::getpid());  // we never held the client end
    IdentityResolver resolver(::getpid(), ::getpid(), diag, owners);
    auto identity = resolver.identify(client, server);
    REQUIRE(identity.ok());
    CHECK(identity->pid == child.pid());  // found by the scan instead
  }
  SECTION("record_fd reads the socket behind a process's fd") {
    CHECK(owners->record_fd(::getpid(), static_cast<uint64_t>(accepted.get())));
    CHECK(owners->find(*diag->inode_of(server, client)) == ::getpid());
    CHECK_FALSE(owners->record_fd(::getpid(), 0));  // stdin: not a socket here
    CHECK_FALSE(owners->find(*inode));
  }
}

TEST_CASE("connect owners forget the oldest past their capacity") {
  ConnectOwners owners;
  for (uint64_t inode = 1; inode <= ConnectOwners::kCapacity + 10; ++inode)
    owners.record(inode, static_cast<pid_t>(inode));
  CHECK_FALSE(owners.find(1));
  CHECK_FALSE(owners.find(10));
  CHECK(owners.find(11) == 11);
  CHECK(owners.find(ConnectOwners::kCapacity + 10) ==
        static_cast<pid_t>(ConnectOwners::kCapacity + 10));
}

TEST_CASE("unknown connections and missing sandboxes fail closed") {
  IdentityResolver resolver(::getpid(), ::getpid());
  const asio::ip::tcp::endpoint nowhere(asio::ip::make_address("127.0.0.1"), 1);
  const asio::ip::tcp::endpoint proxy(asio::ip::make_address("127.0.0.1"), 3128);
  auto missing = resolver.identify(nowhere, proxy);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::kNotFound);
  CHECK(missing.error().message.find("127.0.0.1:1 -> 127.0.0.1:3128") != std::string::npos);

  IdentityResolver unspawned(0, 0);
  auto early = unspawned.identify(nowhere, proxy);
  REQUIRE_FALSE(early.ok());
  CHECK(early.error().message == "entrypoint process not yet spawned");
}

TEST_CASE("deleted binaries hash the live image; replaced ones are integrity violations") {
  openshell::test::TempDir dir("openshell-identity");
  const std::string program = (dir.path() / "sleepy").string();
  fs::copy_file("/bin/sleep", program);
  const Sha256Digest original = openshell::test::sha256_of_file(program);

  TestFd listener = openshell::test::listen_loopback();
  REQUIRE(listener.get() >= 0);
  const asio::ip::tcp::endpoint target = openshell::test::local_endpoint(listener.get());
  IdentityResolver resolver(::getpid(), ::getpid());

  ClientProcess first(target, openshell::test::exec_program({program, "30"}));
  asio::ip::tcp::endpoint client;
  asio::ip::tcp::endpoint server;
  TestFd accepted = accept_one(listener.get(), client, server);
  auto identity = identify_when(resolver, client, server, program);
  REQUIRE(identity.ok());
  CHECK(identity->exe == program);
  CHECK(identity->exe_sha256 == original);
  CHECK(identity->cmdline == std::vector<std::string>{program, "30"});

  // Unlinked while running: readlink says "... (deleted)", which is stripped, and a fresh
  // resolver hashes the image still running.
  fs::remove(program);
  IdentityResolver fresh(::getpid(), ::getpid());
  auto deleted = fresh.identify(client, server);
  REQUIRE(deleted.ok());
  CHECK(deleted->exe == program);
  CHECK(deleted->exe_sha256 == original);

  // A different binary at the same path (one extra byte still runs): refused, with both hashes.
  fs::copy_file("/bin/sleep", program);
  {
    std::ofstream append(program, std::ios::binary | std::ios::app);
    append.put('\0');
  }
  ClientProcess second(target, openshell::test::exec_program({program, "30"}));
  TestFd accepted2 = accept_one(listener.get(), client, server);
  auto violation = identify_when(resolver, client, server, program);
  REQUIRE_FALSE(violation.ok());
  CHECK(violation.error().code == Errc::kPermission);
  CHECK(violation.error().message.find(
            "Binary integrity violation: " + program +
            " hash changed (cached: " + openshell::runtime::sha256_hex(original)) == 0);
}

TEST_CASE("sha256_hex") {
  Sha256Digest digest{};
  digest[0] = 0xAB;
  digest[31] = 0x01;
  const std::string hex = openshell::runtime::sha256_hex(digest);
  CHECK(hex.size() == 64);
  CHECK(hex.substr(0, 4) == "ab00");
  CHECK(hex.substr(60) == "0001");
}
