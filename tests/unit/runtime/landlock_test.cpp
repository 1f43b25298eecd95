// Landlock against the real kernel. restrict_self cannot be undone, so every enforcement check
// runs in a forked child that applies the ruleset, tries one operation and exits with its errno.
#include "openshell/runtime/landlock.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace openshell;           // NOLINT(google-build-using-namespace): test file
using namespace openshell::runtime;  // NOLINT(google-build-using-namespace): test file

namespace {

// Exit code of a child whose apply_landlock failed (errno values stay below it).
constexpr int kApplyFailed = 200;

// Forks, restricts the child with `ruleset`, runs `body` there and returns what it returned: 0
// for success or the errno of the denied operation.
int in_restricted_child(const LandlockRuleset& ruleset, const std::function<int()>& body) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // No Catch2 in here: only syscalls, then _exit (no atexit handlers of the test process).
    const int err = apply_landlock(ruleset);
    _exit(err != 0 ? kApplyFailed : body());
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) != kApplyFailed);
  return WEXITSTATUS(status);
}

int open_errno(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

std::function<int()> opens(const std::string& path, int flags) {
  return [path, flags] { return open_errno(path, flags); };
}

std::function<int()> execs(const std::string& path) {
  return [path] {
    execl(path.c_str(), path.c_str(), static_cast<char*>(nullptr));
    return errno;
  };
}

// A scratch tree under /tmp: ro/f, rw/, out/f, file.txt; removed when the test ends.
class TempTree {
 public:
  TempTree() {
    char pattern[] = "/tmp/openshell-landlock-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    root_ = pattern;
    std::filesystem::create_directories(path("ro"));
    std::filesystem::create_directories(path("rw"));
    std::filesystem::create_directories(path("out"));
    write("ro/f", "hello");
    write("out/f", "hello");
    write("file.txt", "hello");
    // World-writable: only Landlock stands between the child and these.
    std::filesystem::permissions(root_, std::filesystem::perms::all);
    std::filesystem::permissions(path("out"), std::filesystem::perms::all);
  }
  ~TempTree() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  std::string path(std::string_view relative) const { return root_ + "/" + std::string(relative); }
  void write(std::string_view relative, std::string_view text) const {
    std::ofstream(path(relative)) << text;
  }

 private:
  std::string root_;
};

// A logger that keeps every event (the tests are single-threaded).
class CaptureLog {
 public:
  CaptureLog() {
    logger.add_sink(std::make_shared<core::CallbackSink>(
        [this](const core::Event& event) { events_.push_back(event); }));
  }
  CaptureLog(const CaptureLog&) = delete;
  CaptureLog& operator=(const CaptureLog&) = delete;

  int warnings() const {
    int count = 0;
    for (const core::Event& event : events_)
      if (event.level >= core::Level::kWarn) ++count;
    return count;
  }
  bool warned(std::string_view needle) const {
    for (const core::Event& event : events_)
      if (event.level >= core::Level::kWarn && event.message.find(needle) != std::string::npos)
        return true;
    return false;
  }

  core::Logger logger{core::Level::kDebug};

 private:
  std::vector<core::Event> events_;
};

// Sets OPENSHELL_LANDLOCK_MAX_ABI for one scope.
class MaxAbi {
 public:
  explicit MaxAbi(const char* value) { setenv("OPENSHELL_LANDLOCK_MAX_ABI", value, 1); }
  ~MaxAbi() { unsetenv("OPENSHELL_LANDLOCK_MAX_ABI"); }
  MaxAbi(const MaxAbi&) = delete;
  MaxAbi& operator=(const MaxAbi&) = delete;
};

FilesystemRules hard(FilesystemRules rules) {
  rules.compatibility = LandlockCompatibility::kHardRequirement;
  return rules;
}

// Prepares rules that must work without any degradation on this kernel.
LandlockRuleset prepare_clean(const FilesystemRules& rules) {
  CaptureLog log;
  Result<LandlockRuleset> ruleset = prepare_landlock(hard(rules), log.logger);
  INFO((ruleset.ok() ? std::string() : ruleset.error().message));
  REQUIRE(ruleset.ok());
  REQUIRE(ruleset->active());
  CHECK(log.warnings() == 0);
  return std::move(ruleset).value();
}

int kernel_abi() {
  return probe_landlock().abi;
}

}  // namespace

TEST_CASE("probe reports the kernel's Landlock ABI") {
  const LandlockSupport support = probe_landlock();
  CHECK(support.abi >= 1);
  CHECK(support.unavailable_reason.empty());
}

TEST_CASE("empty rules: no ruleset, and applying it is a no-op") {
  CaptureLog log;
  Result<LandlockRuleset> ruleset = prepare_landlock(hard({}), log.logger);
  REQUIRE(ruleset.ok());
  CHECK_FALSE(ruleset->active());
  CHECK(log.warnings() == 0);
  CHECK(apply_landlock(*ruleset) == 0);  // inactive: returns before any syscall, safe here
}

TEST_CASE("read_only: read, list and exec allowed; every write denied") {
  const TempTree tree;
  const LandlockRuleset ruleset = prepare_clean({.read_only = {tree.path("ro"), "/usr"}});
  CHECK(ruleset.abi() >= 1);
  CHECK(in_restricted_child(ruleset, opens(tree.path("ro/f"), O_RDONLY)) == 0);
  CHECK(in_restricted_child(ruleset, opens(tree.path("ro"), O_RDONLY | O_DIRECTORY)) == 0);
  CHECK(in_restricted_child(ruleset, execs("/usr/bin/true")) == 0);
  CHECK(in_restricted_child(ruleset, opens(tree.path("ro/f"), O_WRONLY)) == EACCES);
  CHECK(in_restricted_child(ruleset, opens(tree.path("ro/new"), O_WRONLY | O_CREAT)) == EACCES);
  const std::string file = tree.path("ro/f");
  CHECK(in_restricted_child(ruleset, [&] { return unlink(file.c_str()) == 0 ? 0 : errno; }) ==
        EACCES);
  const std::string dir = tree.path("ro/d");
  CHECK(in_restricted_child(ruleset, [&] { return mkdir(dir.c_str(), 0755) == 0 ? 0 : errno; }) ==
        EACCES);
}

TEST_CASE("read_write: create, write, remove files and directories") {
  const TempTree tree;
  const LandlockRuleset ruleset = prepare_clean({.read_write = {tree.path("rw")}});
  const std::string file = tree.path("rw/new");
  const std::string dir = tree.path("rw/d");
  CHECK(in_restricted_child(ruleset, [&] {
          const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
          if (fd < 0) return errno;
          const bool wrote = ::write(fd, "x", 1) == 1;
          close(fd);
          if (!wrote) return errno;
          if (unlink(file.c_str()) != 0) return errno;
          if (mkdir(dir.c_str(), 0755) != 0) return errno;
          return rmdir(dir.c_str()) == 0 ? 0 : errno;
        }) == 0);
}

TEST_CASE("outside the lists: denied even though DAC allows") {
  const TempTree tree;
  std::filesystem::copy_file("/usr/bin/true", tree.path("out/true"));
  std::filesystem::permissions(tree.path("out/true"), std::filesystem::perms::all);
  const LandlockRuleset ruleset = prepare_clean({.read_only = {tree.path("ro"), "/usr"}});
  CHECK(in_restricted_child(ruleset, opens(tree.path("out/f"), O_RDONLY)) == EACCES);
  CHECK(in_restricted_child(ruleset, opens(tree.path("out/g"), O_WRONLY | O_CREAT)) == EACCES);
  CHECK(in_restricted_child(ruleset, opens(tree.path("out"), O_RDONLY | O_DIRECTORY)) == EACCES);
  CHECK(in_restricted_child(ruleset, execs(tree.path("out/true"))) == EACCES);
  CHECK(in_restricted_child(ruleset, opens("/", O_RDONLY | O_DIRECTORY)) == EACCES);
}

TEST_CASE("file paths: rules on a device and on a regular file") {
  const TempTree tree;
  // Directory rights on a non-directory would make landlock_add_rule fail (EINVAL): hard
  // requirement and no warning show the mask was narrowed to file rights.
  const LandlockRuleset ruleset =
      prepare_clean({.read_only = {tree.path("file.txt")}, .read_write = {"/dev/null"}});
  CHECK(in_restricted_child(ruleset, [] {
          const int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
          if (fd < 0) return errno;
          const bool wrote = ::write(fd, "x", 1) == 1;
          close(fd);
          return wrote ? 0 : errno;
        }) == 0);
  CHECK(in_restricted_child(ruleset, opens(tree.path("file.txt"), O_RDONLY)) == 0);
  CHECK(in_restricted_child(ruleset, opens(tree.path("file.txt"), O_WRONLY)) == EACCES);
  CHECK(in_restricted_child(ruleset, opens(tree.path("ro/f"), O_RDONLY)) == EACCES);
}

TEST_CASE("missing path: best_effort warns and skips it, hard_requirement names it") {
  const TempTree tree;
  const std::string missing = tree.path("does/not/exist");
  const FilesystemRules rules{.read_only = {missing, tree.path("ro")}};

  SECTION("best_effort") {
    CaptureLog log;
    Result<LandlockRuleset> ruleset = prepare_landlock(rules, log.logger);
    REQUIRE(ruleset.ok());
    REQUIRE(ruleset->active());
    CHECK(log.warned(missing));
    // The other path still gets its rule, and the rest stays denied.
    CHECK(in_restricted_child(*ruleset, opens(tree.path("ro/f"), O_RDONLY)) == 0);
    CHECK(in_restricted_child(*ruleset, opens(tree.path("out/f"), O_RDONLY)) == EACCES);
  }
  SECTION("hard_requirement") {
    CaptureLog log;
    Result<LandlockRuleset> ruleset = prepare_landlock(hard(rules), log.logger);
    REQUIRE_FALSE(ruleset.ok());
    const std::string& message = ruleset.error().message;
    CHECK(message.rfind("Landlock: ", 0) == 0);
    CHECK(message.find(missing) != std::string::npos);
  }
  SECTION("best_effort with no usable path: runs without Landlock") {
    CaptureLog log;
    Result<LandlockRuleset> ruleset = prepare_landlock({.read_only = {missing}}, log.logger);
    REQUIRE(ruleset.ok());
    CHECK_FALSE(ruleset->active());
    CHECK(log.warned("no configured path"));
  }
}

TEST_CASE("OPENSHELL_LANDLOCK_MAX_ABI simulates an older kernel") {
  const TempTree tree;
  const FilesystemRules rules{.read_only = {tree.path("ro")}, .devices = {"/dev/null"}};

  SECTION("ABI 1, devices requested: best_effort warns about IOCTL_DEV and still restricts") {
    const MaxAbi cap("1");
    CaptureLog log;
    Result<LandlockRuleset> ruleset = prepare_landlock(rules, log.logger);
    REQUIRE(ruleset.ok());
    REQUIRE(ruleset->active());
    CHECK(ruleset->abi() == 1);
    CHECK(log.warned("IOCTL_DEV"));
    CHECK(log.warned("REFER"));
    CHECK(in_restricted_child(*ruleset, opens(tree.path("ro/f"), O_WRONLY)) == EACCES);
    CHECK(in_restricted_child(*ruleset, opens("/dev/null", O_WRONLY)) == 0);
  }
  SECTION("ABI 1, devices requested: hard_requirement fails naming the right") {
    const MaxAbi cap("1");
    CaptureLog log;
    Result<LandlockRuleset> ruleset = prepare_landlock(hard(rules), log.logger);
    REQUIRE_FALSE(ruleset.ok());
    CHECK(ruleset.error().message.rfind("Landlock: ", 0) == 0);
    CHECK(ruleset.error().message.find("IOCTL_DEV") != std::string::npos);
  }
  SECTION("ABI 2 meets hard_requirement without devices (OpenShell's pinned V2)") {
    const MaxAbi cap("2");
    CaptureLog log;
    Result<LandlockRuleset> ruleset =
        prepare_landlock(hard({.read_only = {tree.path("ro")}}), log.logger);
    REQUIRE(ruleset.ok());
    CHECK(ruleset->abi() == 2);
    CHECK(log.warnings() == 0);
  }
  SECTION("ABI 0: best_effort runs unrestricted with a finding, hard_requirement fails") {
    const MaxAbi cap("0");
    CaptureLog log;
    Result<LandlockRuleset> relaxed = prepare_landlock(rules, log.logger);
    REQUIRE(relaxed.ok());
    CHECK_FALSE(relaxed->active());
    CHECK(log.warned("unavailable"));
    Result<LandlockRuleset> strict = prepare_landlock(hard(rules), log.logger);
    REQUIRE_FALSE(strict.ok());
    CHECK(strict.error().message.rfind("Landlock: unavailable", 0) == 0);
  }
  SECTION("a malformed value is ignored with a warning") {
    const MaxAbi cap("two");
    CaptureLog log;
    Result<LandlockRuleset> ruleset = prepare_landlock(rules, log.logger);
    REQUIRE(ruleset.ok());
    CHECK(ruleset->abi() == std::min(kernel_abi(), 7));
    CHECK(log.warned("OPENSHELL_LANDLOCK_MAX_ABI"));
  }
}

TEST_CASE("TRUNCATE is handled from ABI 3") {
  if (kernel_abi() < 3) {
    WARN("kernel Landlock ABI < 3: TRUNCATE not testable");
    return;
  }
  const TempTree tree;
  tree.write("rw/g", "hello");
  const std::string read_only = tree.path("ro/f");
  const std::string read_write = tree.path("rw/g");
  const auto truncates = [](const std::string& path) {
    return [path] { return truncate(path.c_str(), 0) == 0 ? 0 : errno; };
  };
  const FilesystemRules rules{.read_only = {tree.path("ro")}, .read_write = {tree.path("rw")}};
  {
    const LandlockRuleset ruleset = prepare_clean(rules);
    CHECK(in_restricted_child(ruleset, truncates(read_only)) == EACCES);
    CHECK(in_restricted_child(ruleset, truncates(read_write)) == 0);
  }
  {
    // On ABI 2 truncate(2) is not a handled access, so it goes through.
    const MaxAbi cap("2");
    const LandlockRuleset ruleset = prepare_clean(rules);
    CHECK(in_restricted_child(ruleset, truncates(read_only)) == 0);
  }
}

TEST_CASE("devices get IOCTL_DEV; a read_only device does not") {
  if (kernel_abi() < 5) {
    WARN("kernel Landlock ABI < 5: IOCTL_DEV not testable");
    return;
  }
  const int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  REQUIRE(master >= 0);
  REQUIRE(grantpt(master) == 0);
  REQUIRE(unlockpt(master) == 0);
  const std::string slave = ptsname(master);
  const auto tcgets = [slave](int flags) {
    return [slave, flags] {
      const int fd = open(slave.c_str(), flags | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) return errno;
      termios attrs{};
      const int result = tcgetattr(fd, &attrs) == 0 ? 0 : errno;
      close(fd);
      return result;
    };
  };
  {
    const LandlockRuleset ruleset = prepare_clean({.devices = {slave}});
    CHECK(in_restricted_child(ruleset, tcgets(O_RDWR)) == 0);
  }
  {
    const LandlockRuleset ruleset = prepare_clean({.read_only = {slave}});
    CHECK(in_restricted_child(ruleset, tcgets(O_RDONLY)) == EACCES);
    CHECK(in_restricted_child(ruleset, tcgets(O_RDWR)) == EACCES);
  }
  close(master);
}

TEST_CASE("scope_ipc: signals and abstract unix sockets stay inside the sandbox") {
  if (kernel_abi() < 6) {
    WARN("kernel Landlock ABI < 6: scoping not testable");
    return;
  }
  // An abstract socket the (unrestricted) test process listens on.
  const std::string name = "openshell-landlock-test-" + std::to_string(getpid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  REQUIRE(bind(listener, reinterpret_cast<const sockaddr*>(&address), length) == 0);
  REQUIRE(listen(listener, 8) == 0);
  const auto connects = [&] {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    const int result =
        connect(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0 ? 0 : errno;
    close(fd);
    return result;
  };
  const auto signals_parent = [] { return kill(getppid(), 0) == 0 ? 0 : errno; };
  const auto signals_self = [] { return kill(getpid(), 0) == 0 ? 0 : errno; };

  SECTION("scoped") {
    const LandlockRuleset ruleset = prepare_clean({.read_only = {"/usr"}});
    CHECK(in_restricted_child(ruleset, signals_parent) == EPERM);
    CHECK(in_restricted_child(ruleset, signals_self) == 0);
    CHECK(in_restricted_child(ruleset, connects) == EPERM);
  }
  SECTION("not scoped when scope_ipc is off") {
    const LandlockRuleset ruleset = prepare_clean({.read_only = {"/usr"}, .scope_ipc = false});
    CHECK(in_restricted_child(ruleset, signals_parent) == 0);
    CHECK(in_restricted_child(ruleset, connects) == 0);
  }
  close(listener);
}

TEST_CASE("LandlockRuleset owns its fd: move transfers it, destruction closes it") {
  const TempTree tree;
  LandlockRuleset first = prepare_clean({.read_only = {tree.path("ro")}});
  const int fd = first.fd();
  const int abi = first.abi();
  LandlockRuleset second(std::move(first));
  CHECK_FALSE(first.active());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  CHECK(second.fd() == fd);
  CHECK(second.abi() == abi);
  {
    LandlockRuleset third;
    third = std::move(second);
    CHECK(third.fd() == fd);
    CHECK(fcntl(fd, F_GETFD) >= 0);
  }
  CHECK(fcntl(fd, F_GETFD) == -1);
  CHECK(errno == EBADF);
}
