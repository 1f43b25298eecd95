// The bypass monitor on the real kernel: a forked child in a network namespace of its own (only
// `lo`, down: nothing can leave even if the code under test is wrong) installs the notification
// filter, the test takes its listener as the spawner does, and the child's calls are watched.
#include "openshell/runtime/bypass_monitor.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "openshell/runtime/seccomp.hpp"

using openshell::runtime::build_bypass_filter;
using openshell::runtime::bypass_destination;
using openshell::runtime::BypassAttempt;
using openshell::runtime::BypassMonitor;
using openshell::runtime::BypassMonitorOptions;
using openshell::runtime::install_bypass_filter;
using openshell::runtime::UniqueFd;

namespace {

sockaddr_in v4(const char* address, uint16_t port) {
  sockaddr_in out{};
  out.sin_family = AF_INET;
  out.sin_port = htons(port);
  REQUIRE(::inet_pton(AF_INET, address, &out.sin_addr) == 1);
  return out;
}

sockaddr_in6 v6(const char* address, uint16_t port) {
  sockaddr_in6 out{};
  out.sin6_family = AF_INET6;
  out.sin6_port = htons(port);
  REQUIRE(::inet_pton(AF_INET6, address, &out.sin6_addr) == 1);
  return out;
}

// Collects what the monitor reports, from its thread.
struct Reports {
  std::mutex mutex;
  std::vector<BypassAttempt> attempts;

  BypassMonitor::Report sink() {
    return [this](const BypassAttempt& attempt) {
      std::lock_guard lock(mutex);
      attempts.push_back(attempt);
    };
  }
  std::vector<BypassAttempt> taken() {
    std::lock_guard lock(mutex);
    return attempts;
  }
};

// The errno of each call the child made (0: it succeeded).
struct ChildRun {
  std::vector<int> errors;
  pid_t pid = -1;
  int status = 0;
};

// Forks a child into a new network namespace, installs the filter there, hands its listener to
// a monitor here (pidfd_getfd, as the spawner does) and runs `calls` in the child.
ChildRun watch_child(BypassMonitor::Report report, const std::function<std::vector<int>()>& calls,
                     std::unique_ptr<BypassMonitor>& monitor, BypassMonitorOptions options = {}) {
  auto filter = build_bypass_filter();
  INFO((filter.ok() ? std::string() : filter.error().message));
  REQUIRE(filter.ok());
  int to_parent[2];
  int to_child[2];
  REQUIRE(::pipe2(to_parent, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(to_child, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(to_parent[0]);
    ::close(to_child[1]);
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(100);
    const int listener = install_bypass_filter(*filter);
    if (listener < 0) ::_exit(101);
    if (::write(to_parent[1], &listener, sizeof listener) != sizeof listener) ::_exit(102);
    char go = 0;
    if (::read(to_child[0], &go, 1) != 1) ::_exit(103);
    ::close(listener);
    const std::vector<int> errors = calls();
    for (const int err : errors) {
      if (::write(to_parent[1], &err, sizeof err) != sizeof err) ::_exit(104);
    }
    ::_exit(0);
  }
  ::close(to_parent[1]);
  ::close(to_child[0]);
  int number = -1;
  REQUIRE(::read(to_parent[0], &number, sizeof number) == sizeof number);
  UniqueFd process(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)));
  REQUIRE(process);
  UniqueFd listener(static_cast<int>(::syscall(SYS_pidfd_getfd, process.get(), number, 0U)));
  REQUIRE(listener);
  auto started = BypassMonitor::start(std::move(listener), std::move(report), options);
  REQUIRE(started.ok());
  monitor = std::move(*started);
  REQUIRE(::write(to_child[1], "g", 1) == 1);
  ::close(to_child[1]);

  ChildRun run;
  run.pid = pid;
  int err = 0;
  while (::read(to_parent[0], &err, sizeof err) == sizeof err)
    run.errors.push_back(err);
  ::close(to_parent[0]);
  REQUIRE(::waitpid(pid, &run.status, 0) == pid);
  return run;
}

// The same calls in the same kind of namespace, without filter or monitor.
std::vector<int> unwatched(const std::function<std::vector<int>()>& calls) {
  int to_parent[2];
  REQUIRE(::pipe2(to_parent, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(to_parent[0]);
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(100);
    for (const int err : calls()) {
      if (::write(to_parent[1], &err, sizeof err) != sizeof err) ::_exit(104);
    }
    ::_exit(0);
  }
  ::close(to_parent[1]);
  std::vector<int> errors;
  int err = 0;
  while (::read(to_parent[0], &err, sizeof err) == sizeof err)
    errors.push_back(err);
  ::close(to_parent[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return errors;
}

int errno_of(long rc) {
  return rc < 0 ? errno : 0;
}

int tcp_connect(const sockaddr* address, socklen_t length) {
  const int sock = ::socket(address->sa_family, SOCK_STREAM, 0);
  const int err = errno_of(::connect(sock, address, length));
  ::close(sock);
  return err;
}

int udp_sendto(const sockaddr* address, socklen_t length) {
  const int sock = ::socket(address->sa_family, SOCK_DGRAM, 0);
  const int err = errno_of(::sendto(sock, "q", 1, 0, address, length));
  ::close(sock);
  return err;
}

int udp_sendmsg(const sockaddr* address, socklen_t length) {
  const int sock = ::socket(address->sa_family, SOCK_DGRAM, 0);
  char byte = 'q';
  iovec part{&byte, 1};
  msghdr message{};
  message.msg_name = const_cast<sockaddr*>(address);
  message.msg_namelen = length;
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  const int err = errno_of(::sendmsg(sock, &message, 0));
  ::close(sock);
  return err;
}

}  // namespace

TEST_CASE("bypass_destination keeps only addresses outside the namespace", "[bypass]") {
  const auto outside = v4("192.0.2.7", 443);
  const auto found = bypass_destination(&outside, sizeof outside);
  REQUIRE(found);
  CHECK(found->address == "192.0.2.7");
  CHECK(found->port == 443);

  for (const char* local : {"127.0.0.1", "127.1.2.3"}) {
    const auto address = v4(local, 3128);
    CHECK_FALSE(bypass_destination(&address, sizeof address));
  }
  for (const char* local : {"::1", "::ffff:127.0.0.1"}) {
    const auto address = v6(local, 3128);
    CHECK_FALSE(bypass_destination(&address, sizeof address));
  }
  const auto ipv6 = v6("2001:db8::1", 53);
  const auto found6 = bypass_destination(&ipv6, sizeof ipv6);
  REQUIRE(found6);
  CHECK(found6->address == "2001:db8::1");
  CHECK(found6->port == 53);
  const auto mapped = v6("::ffff:192.0.2.9", 80);
  REQUIRE(bypass_destination(&mapped, sizeof mapped));
  CHECK(bypass_destination(&mapped, sizeof mapped)->address == "::ffff:192.0.2.9");

  // Short, unknown or absent addresses are nobody's destination.
  CHECK_FALSE(bypass_destination(&outside, sizeof outside - 1));
  CHECK_FALSE(bypass_destination(&ipv6, sizeof(sockaddr_in)));
  CHECK_FALSE(bypass_destination(nullptr, 16));
  sockaddr_un local{};
  local.sun_family = AF_UNIX;
  CHECK_FALSE(bypass_destination(&local, sizeof local));
}

TEST_CASE("the monitor names who tried to leave, and every call fails as it would", "[bypass]") {
  Reports reports;
  std::unique_ptr<BypassMonitor> monitor;
  const auto tcp4 = v4("192.0.2.1", 80);
  const auto udp4 = v4("192.0.2.2", 53);
  const auto udp6 = v6("2001:db8::3", 443);
  const auto proxy = v4("127.0.0.1", 3128);
  const auto calls = [&] {
    return std::vector<int>{
        tcp_connect(reinterpret_cast<const sockaddr*>(&tcp4), sizeof tcp4),
        udp_sendto(reinterpret_cast<const sockaddr*>(&udp4), sizeof udp4),
        udp_sendmsg(reinterpret_cast<const sockaddr*>(&udp6), sizeof udp6),
        // Loopback is the namespace's own business (the proxy listens there): not reported.
        tcp_connect(reinterpret_cast<const sockaddr*>(&proxy), sizeof proxy),
    };
  };
  const ChildRun run = watch_child(reports.sink(), calls, monitor);
  REQUIRE(WIFEXITED(run.status));
  REQUIRE(WEXITSTATUS(run.status) == 0);
  // The namespace has no route anywhere: each call fails at once, exactly as unwatched.
  REQUIRE(run.errors.size() == 4);
  CHECK(run.errors[0] == ENETUNREACH);
  CHECK(run.errors[1] == ENETUNREACH);
  CHECK(run.errors == unwatched(calls));

  monitor->stop();
  const auto attempts = reports.taken();
  REQUIRE(attempts.size() == 3);
  char self[4096] = {};
  REQUIRE(::readlink("/proc/self/exe", self, sizeof self - 1) > 0);
  for (const auto& attempt : attempts) {
    CHECK(attempt.pid == run.pid);
    CHECK(attempt.exe == self);  // the forked child runs this very test binary
  }
  CHECK(attempts[0].call == "connect");
  CHECK(attempts[0].address == "192.0.2.1");
  CHECK(attempts[0].port == 80);
  CHECK(attempts[0].protocol == "tcp");
  CHECK(attempts[1].call == "sendto");
  CHECK(attempts[1].address == "192.0.2.2");
  CHECK(attempts[1].port == 53);
  CHECK(attempts[1].protocol == "udp");
  CHECK(attempts[2].call == "sendmsg");
  CHECK(attempts[2].address == "2001:db8::3");
  CHECK(attempts[2].protocol == "udp");
  CHECK(monitor->attempts() == 3);
  CHECK(monitor->unreported() == 0);
}

TEST_CASE("the monitor's reports are rate limited and the rest counted", "[bypass]") {
  Reports reports;
  std::unique_ptr<BypassMonitor> monitor;
  const auto outside = v4("192.0.2.1", 443);
  constexpr int kAttempts = 40;
  BypassMonitorOptions options;
  options.reports_per_second = 0.001;  // nothing refills during the test
  options.burst = 5;
  const ChildRun run = watch_child(
      reports.sink(),
      [&] {
        std::vector<int> errors;
        for (int i = 0; i < kAttempts; ++i)
          errors.push_back(
              tcp_connect(reinterpret_cast<const sockaddr*>(&outside), sizeof outside));
        return errors;
      },
      monitor, options);
  REQUIRE(WIFEXITED(run.status));
  REQUIRE(run.errors.size() == kAttempts);
  for (const int err : run.errors)
    CHECK(err == ENETUNREACH);
  monitor->stop();
  CHECK(reports.taken().size() == 5);
  CHECK(monitor->attempts() == kAttempts);
  CHECK(monitor->unreported() == kAttempts - 5);
}

TEST_CASE("the monitor's thread ends by itself once the sandbox is gone", "[bypass]") {
  Reports reports;
  std::unique_ptr<BypassMonitor> monitor;
  const ChildRun run = watch_child(
      reports.sink(), [] { return std::vector<int>{}; }, monitor);
  REQUIRE(WIFEXITED(run.status));
  // No process uses the filter any more: the listener hangs up and stop() only joins.
  monitor->stop();
  CHECK(monitor->attempts() == 0);
}
