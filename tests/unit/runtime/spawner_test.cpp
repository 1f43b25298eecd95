// The spawner against the real kernel (root only; CI runs unit_runtime as root): exit codes,
// exec failures, the in-namespace proxy listener, signal forwarding, rootless user namespaces,
// and no sandbox outliving its spawner. Each scenario runs in a forked child: Spawner::start
// refuses a process with threads, and other tests in this binary may have left some.
#include "openshell/runtime/spawner.hpp"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "openshell/runtime/bypass_monitor.hpp"
#include "openshell/runtime/sandbox_defaults.hpp"

namespace rt = openshell::runtime;

namespace {

constexpr int kWaitMs = 10'000;

// Runs `scenario` in a forked child and returns its exit code (0: passed; it prints what failed).
int in_child(const std::function<int()>& scenario) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 90;
    try {
      code = scenario();
    } catch (...) {
      code = 91;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

std::optional<rt::Spawner> start_spawner(bool bypass_monitor = false) {
  auto seccomp = rt::build_seccomp({});
  if (!seccomp.ok()) return std::nullopt;
  rt::SpawnerConfig config;
  config.seccomp = std::move(*seccomp);
  if (bypass_monitor) {
    auto filter = rt::build_bypass_filter();
    if (!filter.ok()) return std::nullopt;
    config.bypass_filter = std::move(*filter);
  }
  auto spawner = rt::Spawner::start(config);
  if (!spawner.ok()) {
    std::fprintf(stderr, "Spawner::start: %s\n", spawner.error().message.c_str());
    return std::nullopt;
  }
  return std::move(*spawner);
}

rt::SandboxSpec spec_for(std::vector<std::string> argv, uint32_t id = 65534) {
  rt::SandboxSpec spec;
  spec.program = argv.front();
  spec.argv = std::move(argv);
  // Built from std::string values: g++ 12 -O2 misreports -Wrestrict for a literal assigned here.
  spec.env.push_back(std::string("PATH=") + "/usr/bin:/bin");
  spec.workdir = std::string(1, '/');
  spec.uid = spec.gid = id;
  spec.private_dirs = rt::default_private_dirs();
  spec.masked_dirs = rt::default_masked_dirs();
  return spec;
}

// The wait status of `pid`'s exit notice, or nullopt after kWaitMs.
std::optional<int> wait_exit(rt::Spawner& spawner, pid_t pid) {
  for (int waited = 0; waited < kWaitMs; waited += 50) {
    auto exit = spawner.read_exit();
    if (!exit.ok()) return std::nullopt;
    if (exit->has_value() && (*exit)->pid == pid) return (*exit)->wait_status;
    pollfd ready{spawner.event_fd(), POLLIN, 0};
    ::poll(&ready, 1, 50);
  }
  return std::nullopt;
}

int expect_exit(const rt::SandboxSpec& spec, int expected_code) {
  auto spawner = start_spawner();
  if (!spawner) return 1;
  auto sandbox = spawner->spawn(spec, {});
  if (!sandbox.ok()) {
    std::fprintf(stderr, "spawn: %s\n", sandbox.error().message.c_str());
    return 2;
  }
  const auto status = wait_exit(*spawner, sandbox->pid());
  if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != expected_code) return 3;
  return 0;
}

}  // namespace

TEST_CASE("spawner: the init exits with the main process's code") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] { return expect_exit(spec_for({"/bin/sh", "-c", "exit 3"}), 3); }) == 0);
  CHECK(in_child([] { return expect_exit(spec_for({"/bin/sh", "-c", "kill -9 $$"}), 137); }) == 0);
}

TEST_CASE("spawner: a program that cannot be executed is a failure with 127 or 126") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto spawner = start_spawner();
          if (!spawner) return 1;
          auto missing = spawner->spawn(spec_for({"/nonexistent/program"}), {});
          if (missing.ok() || missing.error().exit_code != 127) return 2;
          if (missing.error().message.find("execve /nonexistent/program") == std::string::npos) {
            return 3;
          }
          auto not_executable = spawner->spawn(spec_for({"/etc/passwd"}), {});
          if (not_executable.ok() || not_executable.error().exit_code != 126) return 4;
          auto relative = spawner->spawn(spec_for({"sh"}), {});
          return relative.ok() ? 5 : 0;  // the program must be an absolute path
        }) == 0);
}

TEST_CASE("spawner: the proxy listener is bound inside the sandbox's namespace") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto spawner = start_spawner();
          if (!spawner) return 1;
          auto spec = spec_for({"/bin/bash", "-c", "echo hello >/dev/tcp/127.0.0.1/3128"});
          spec.network = rt::SandboxNetwork::kProxy;
          auto sandbox = spawner->spawn(spec, {});
          if (!sandbox.ok()) return 2;
          rt::UniqueFd listener = sandbox->take_listener();
          if (!listener) return 3;
          rt::UniqueFd connection(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
          if (!connection) return 4;
          char data[16] = {};
          if (::recv(connection.get(), data, sizeof data, MSG_WAITALL) != 6) return 5;
          if (std::string(data) != "hello\n") return 6;
          const auto status = wait_exit(*spawner, sandbox->pid());
          return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0 ? 0 : 7;
        }) == 0);
}

TEST_CASE("spawner: sandboxes with their own network hand out the bypass monitor's listener") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto spawner = start_spawner(/*bypass_monitor=*/true);
          if (!spawner) return 1;
          auto spec = spec_for({"/bin/bash", "-c", "echo hello >/dev/tcp/127.0.0.1/3128"});
          spec.network = rt::SandboxNetwork::kProxy;
          auto sandbox = spawner->spawn(spec, {});
          if (!sandbox.ok()) return 2;
          rt::UniqueFd listener = sandbox->take_listener();
          rt::UniqueFd notifications = sandbox->take_bypass_listener();
          if (!listener || !notifications) return 3;
          // The child's connect waits for an answer: without a monitor it would hang here.
          std::atomic<int> trapped{0};
          auto monitor = rt::BypassMonitor::start(std::move(notifications),
                                                  [&](const rt::BypassAttempt&) { ++trapped; });
          if (!monitor.ok()) return 4;
          rt::UniqueFd connection(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
          if (!connection) return 5;
          const auto status = wait_exit(*spawner, sandbox->pid());
          if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) return 6;
          (*monitor)->stop();
          if (trapped != 0) return 7;  // loopback is not a bypass

          // A host-network sandbox has no proxy to bypass: no monitor.
          auto host = spec_for({"/bin/true"});
          host.network = rt::SandboxNetwork::kHost;
          auto unwatched = spawner->spawn(host, {});
          if (!unwatched.ok()) return 8;
          if (unwatched->take_bypass_listener()) return 9;
          return wait_exit(*spawner, unwatched->pid()) ? 0 : 10;
        }) == 0);
}

TEST_CASE("spawner: signals reach the main process, 128+N comes back") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto spawner = start_spawner();
          if (!spawner) return 1;
          auto sandbox = spawner->spawn(spec_for({"/bin/sleep", "30"}), {});
          if (!sandbox.ok()) return 2;
          ::usleep(200'000);  // let sleep exec: before it, the init forwards to a setup child
          if (!sandbox->signal(SIGTERM).ok()) return 3;
          const auto status = wait_exit(*spawner, sandbox->pid());
          return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 128 + SIGTERM ? 0 : 4;
        }) == 0);
}

TEST_CASE("spawner: rootless sandboxes map the caller into a user namespace") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
              ::setresuid(65534, 65534, 65534) != 0) {
            return 1;
          }
          auto spec = spec_for({"/bin/sh", "-c", "test \"$(id -u):$(id -g)\" = 65534:65534"});
          spec.user_namespace = true;
          return expect_exit(spec, 0);
        }) == 0);
}

TEST_CASE("spawner: no sandbox outlives its spawner") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          pid_t pid = -1;
          {
            auto spawner = start_spawner();
            if (!spawner) return 1;
            auto sandbox = spawner->spawn(spec_for({"/bin/sleep", "30"}), {});
            if (!sandbox.ok()) return 2;
            pid = sandbox->pid();
          }  // ~Spawner: the spawner SIGKILLs and reaps its sandboxes, then exits
          return ::kill(pid, 0) != 0 && errno == ESRCH ? 0 : 3;
        }) == 0);
}

namespace {

// Everything `fd` delivers until EOF (or kWaitMs).
std::string read_all(int fd) {
  std::string text;
  char buffer[256];
  for (;;) {
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, kWaitMs) <= 0) return text;
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got <= 0) return text;
    text.append(buffer, static_cast<size_t>(got));
  }
}

// Spawns a sandbox running sleep and a session in it printing its network namespace and uid;
// 0 when the session shares the main process's namespace and runs as the sandbox user.
int session_joins(bool rootless) {
  if (rootless && (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                   ::setresuid(65534, 65534, 65534) != 0)) {
    return 1;
  }
  auto spawner = start_spawner();
  if (!spawner) return 2;
  auto spec = spec_for({"/bin/sleep", "30"});
  spec.user_namespace = rootless;
  auto sandbox = spawner->spawn(spec, {});
  if (!sandbox.ok()) {
    std::fprintf(stderr, "spawn: %s\n", sandbox.error().message.c_str());
    return 3;
  }
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return 4;
  rt::UniqueFd out_read(out[0]);
  rt::UniqueFd out_write(out[1]);
  auto session_spec = spec;
  session_spec.program = "/bin/sh";
  session_spec.argv = {"/bin/sh", "-c", "readlink /proc/self/ns/net; id -u; echo $$"};
  auto session = spawner->spawn_session(sandbox->pidfd(), session_spec, {0, out_write.get(), 2});
  out_write.reset();
  if (!session.ok()) {
    std::fprintf(stderr, "spawn_session: %s\n", session.error().message.c_str());
    return 5;
  }
  const std::string output = read_all(out_read.get());
  const auto status = wait_exit(*spawner, session->pid());
  if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) return 6;
  // The main process is the init's only child; its namespace as the host sees it.
  char link[128] = {};
  const std::string init_net = "/proc/" + std::to_string(sandbox->pid()) + "/ns/net";
  if (::readlink(init_net.c_str(), link, sizeof link - 1) <= 0) return 7;
  char own[128] = {};
  if (::readlink("/proc/self/ns/net", own, sizeof own - 1) <= 0) return 8;
  const std::string expected = std::string(link) + "\n65534\n";
  if (output.rfind(expected, 0) != 0 || std::string(link) == own) {
    std::fprintf(stderr, "session printed '%s', sandbox net %s\n", output.c_str(), link);
    return 9;
  }
  // Inside the sandbox's pid namespace: its shell is not pid 1 (the init) but a small number.
  const int inner_pid = std::atoi(output.c_str() + expected.size());
  if (inner_pid <= 1 || inner_pid > 100) return 10;
  // The sandbox's end takes the session with it.
  if (!sandbox->signal(SIGKILL).ok()) return 11;
  if (!wait_exit(*spawner, sandbox->pid())) return 12;
  auto late = spawner->spawn_session(sandbox->pidfd(), session_spec, {});
  return late.ok() ? 13 : 0;  // no such sandbox any more
}

// Spawns a sandbox whose main process serves "hello" on its own 127.0.0.1:4000 and connects to
// it through the spawner; 0 when that works, a port nothing listens on inside is refused, and
// the caller's own loopback listener is out of reach.
int connect_reaches_the_sandbox_loopback_only(bool rootless) {
  if (rootless && (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                   ::setresuid(65534, 65534, 65534) != 0)) {
    return 1;
  }
  auto spawner = start_spawner();
  if (!spawner) return 2;
  auto spec = spec_for({"/usr/bin/python3", "-c",
                        "import socket\n"
                        "s = socket.socket(); s.bind(('127.0.0.1', 4000)); s.listen()\n"
                        "while True:\n"
                        "    c, _ = s.accept(); c.sendall(b'hello'); c.close()\n"});
  spec.user_namespace = rootless;
  auto sandbox = spawner->spawn(spec, {});
  if (!sandbox.ok()) return 3;
  const auto address = [](uint16_t port) {
    sockaddr_storage storage{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return storage;
  };
  rt::UniqueFd connected;
  for (int attempt = 0; attempt < 100 && !connected; ++attempt) {
    auto socket = spawner->connect_in_sandbox(sandbox->pidfd(), address(4000));
    if (socket.ok()) {
      connected = std::move(*socket);
    } else {
      ::usleep(50'000);  // the server is still starting: refused
    }
  }
  if (!connected) return 4;
  char greeting[8] = {};
  if (::read(connected.get(), greeting, sizeof greeting) != 5 || std::string(greeting) != "hello") {
    return 5;
  }
  auto nobody_there = spawner->connect_in_sandbox(sandbox->pidfd(), address(4001));
  if (nobody_there.ok() ||
      nobody_there.error().message.find("Connection refused") == std::string::npos) {
    return 6;
  }
  // Our own loopback listener is in another namespace: refused from inside the sandbox.
  const int ours = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage any = address(0);
  socklen_t length = sizeof(sockaddr_in);
  if (::bind(ours, reinterpret_cast<sockaddr*>(&any), length) != 0 || ::listen(ours, 1) != 0 ||
      ::getsockname(ours, reinterpret_cast<sockaddr*>(&any), &length) != 0) {
    return 7;
  }
  if (spawner->connect_in_sandbox(sandbox->pidfd(), any).ok()) return 8;
  ::close(ours);
  if (!sandbox->signal(SIGKILL).ok() || !wait_exit(*spawner, sandbox->pid())) return 9;
  return spawner->connect_in_sandbox(sandbox->pidfd(), address(4000)).ok() ? 10 : 0;
}

}  // namespace

TEST_CASE("spawner: a session joins a running sandbox with the main process's isolation") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] { return session_joins(/*rootless=*/false); }) == 0);
  CHECK(in_child([] { return session_joins(/*rootless=*/true); }) == 0);
}

TEST_CASE("spawner: connects inside a sandbox reach its loopback, root and rootless") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] { return connect_reaches_the_sandbox_loopback_only(/*rootless=*/false); }) ==
        0);
  CHECK(in_child([] { return connect_reaches_the_sandbox_loopback_only(/*rootless=*/true); }) == 0);
}

TEST_CASE("spawner: a session dies with its sandbox") {
  if (::geteuid() != 0) return;
  CHECK(
      in_child([] {
        auto spawner = start_spawner();
        if (!spawner) return 1;
        auto sandbox = spawner->spawn(spec_for({"/bin/sleep", "30"}), {});
        if (!sandbox.ok()) return 2;
        auto session = spawner->spawn_session(sandbox->pidfd(), spec_for({"/bin/sleep", "30"}), {});
        if (!session.ok()) return 3;
        if (!sandbox->signal(SIGKILL).ok()) return 4;
        const auto status = wait_exit(*spawner, session->pid());
        return status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL ? 0 : 5;
      }) == 0);
}

TEST_CASE("spawner: a second spawner joins a sandbox by its init's pidfd") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto first = start_spawner();
          auto second = start_spawner();
          if (!first || !second) return 1;
          auto sandbox = first->spawn(spec_for({"/bin/sleep", "30"}), {});
          if (!sandbox.ok()) return 2;
          auto session =
              second->spawn_session(sandbox->pidfd(), spec_for({"/bin/sh", "-c", "exit 7"}), {});
          if (!session.ok()) return 3;
          const auto status = wait_exit(*second, session->pid());
          if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 7) return 4;
          return sandbox->signal(SIGKILL).ok() && wait_exit(*first, sandbox->pid()) ? 0 : 5;
        }) == 0);
}

TEST_CASE("spawner: a session of a watched sandbox brings its own bypass monitor listener") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto spawner = start_spawner(/*bypass_monitor=*/true);
          if (!spawner) return 1;
          auto sandbox = spawner->spawn(spec_for({"/bin/sleep", "30"}), {});
          if (!sandbox.ok()) return 2;
          auto session = spawner->spawn_session(
              sandbox->pidfd(),
              spec_for({"/usr/bin/python3", "-c",
                        "import socket, sys\n"
                        "try: socket.create_connection(('192.0.2.1', 80), timeout=5)\n"
                        "except OSError as e: sys.exit(e.errno)\n"}),
              {});
          if (!session.ok()) return 3;
          rt::UniqueFd listener = session->take_bypass_listener();
          if (!listener) return 4;
          std::mutex mutex;
          std::vector<rt::BypassAttempt> attempts;
          auto monitor =
              rt::BypassMonitor::start(std::move(listener), [&](const rt::BypassAttempt& attempt) {
                const std::lock_guard lock(mutex);
                attempts.push_back(attempt);
              });
          if (!monitor.ok()) return 5;
          // The call was held in the kernel until the monitor answered; then it failed as it
          // would have, unwatched.
          const auto status = wait_exit(*spawner, session->pid());
          if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != ENETUNREACH) return 6;
          (*monitor)->stop();
          const std::lock_guard lock(mutex);
          if (attempts.size() != 1 || attempts[0].call != "connect" ||
              attempts[0].address != "192.0.2.1" || attempts[0].port != 80 ||
              attempts[0].pid != session->pid() ||
              attempts[0].exe.find("python3") == std::string::npos) {
            return 7;
          }
          return sandbox->signal(SIGKILL).ok() && wait_exit(*spawner, sandbox->pid()) ? 0 : 8;
        }) == 0);
}

TEST_CASE("spawner: a session joins the namespaces the sandbox has, whatever its spec says") {
  if (::geteuid() != 0) return;
  CHECK(in_child([] {
          auto spawner = start_spawner();
          if (!spawner) return 1;
          auto host = spec_for({"/bin/sleep", "30"});
          host.network = rt::SandboxNetwork::kHost;
          auto sandbox = spawner->spawn(host, {});
          if (!sandbox.ok()) return 2;
          int out[2];
          if (::pipe2(out, O_CLOEXEC) != 0) return 3;
          rt::UniqueFd out_read(out[0]);
          rt::UniqueFd out_write(out[1]);
          // The request claims a network namespace of its own; the sandbox has none.
          auto session = spawner->spawn_session(sandbox->pidfd(),
                                                spec_for({"/bin/readlink", "/proc/self/ns/net"}),
                                                {0, out_write.get(), 2});
          out_write.reset();
          if (!session.ok()) return 4;
          const std::string output = read_all(out_read.get());
          char own[128] = {};
          if (::readlink("/proc/self/ns/net", own, sizeof own - 1) <= 0) return 5;
          if (output != std::string(own) + "\n") return 6;
          // A rootless request for a sandbox without a user namespace is refused.
          auto rootless = spec_for({"/bin/true"}, 0);
          rootless.user_namespace = true;
          if (spawner->spawn_session(sandbox->pidfd(), rootless, {}).ok()) return 7;
          return sandbox->signal(SIGKILL).ok() && wait_exit(*spawner, sandbox->pid()) ? 0 : 8;
        }) == 0);
}
