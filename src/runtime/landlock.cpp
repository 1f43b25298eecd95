// Landlock (runtime-spec §2): ABI probe and ruleset construction in the parent, before fork, and
// the async-signal-safe restrict_self the child runs between fork and exec.
#include "openshell/runtime/landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "openshell/core/events.hpp"

// Debian 12's linux-libc-dev (6.1) stops at ABI 2. Values below are fixed by the kernel uapi.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3 (Linux 6.2)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5 (Linux 6.10)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6 (Linux 6.12)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)  // ABI 6 (Linux 6.12)
#endif

namespace openshell::runtime {
namespace {

// ABI 7 (Linux 6.15) only added audit-log flags to restrict_self, nothing to handle; ABI 4's
// network rights are not ours to handle (the netns and the proxy own the network).
constexpr int kKnownMaxAbi = 7;
constexpr int kScopeAbi = 6;
constexpr const char* kMaxAbiVariable = "OPENSHELL_LANDLOCK_MAX_ABI";

struct FsRight {
  uint64_t bit;
  int abi;  // first ABI that knows it
  std::string_view name;
};
constexpr FsRight kFsRights[] = {
    {LANDLOCK_ACCESS_FS_EXECUTE, 1, "EXECUTE"},
    {LANDLOCK_ACCESS_FS_WRITE_FILE, 1, "WRITE_FILE"},
    {LANDLOCK_ACCESS_FS_READ_FILE, 1, "READ_FILE"},
    {LANDLOCK_ACCESS_FS_READ_DIR, 1, "READ_DIR"},
    {LANDLOCK_ACCESS_FS_REMOVE_DIR, 1, "REMOVE_DIR"},
    {LANDLOCK_ACCESS_FS_REMOVE_FILE, 1, "REMOVE_FILE"},
    {LANDLOCK_ACCESS_FS_MAKE_CHAR, 1, "MAKE_CHAR"},
    {LANDLOCK_ACCESS_FS_MAKE_DIR, 1, "MAKE_DIR"},
    {LANDLOCK_ACCESS_FS_MAKE_REG, 1, "MAKE_REG"},
    {LANDLOCK_ACCESS_FS_MAKE_SOCK, 1, "MAKE_SOCK"},
    {LANDLOCK_ACCESS_FS_MAKE_FIFO, 1, "MAKE_FIFO"},
    {LANDLOCK_ACCESS_FS_MAKE_BLOCK, 1, "MAKE_BLOCK"},
    {LANDLOCK_ACCESS_FS_MAKE_SYM, 1, "MAKE_SYM"},
    {LANDLOCK_ACCESS_FS_REFER, 2, "REFER"},
    {LANDLOCK_ACCESS_FS_TRUNCATE, 3, "TRUNCATE"},
    {LANDLOCK_ACCESS_FS_IOCTL_DEV, 5, "IOCTL_DEV"},
};

constexpr uint64_t fs_rights_for_abi(int abi) {
  uint64_t mask = 0;
  for (const FsRight& right : kFsRights)
    if (right.abi <= abi) mask |= right.bit;
  return mask;
}

constexpr uint64_t kReadRights =
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE;
constexpr uint64_t kDeviceRights = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                   LANDLOCK_ACCESS_FS_IOCTL_DEV | LANDLOCK_ACCESS_FS_TRUNCATE;
// The kernel refuses (EINVAL) directory rights on a rule whose fd is not a directory.
constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                 LANDLOCK_ACCESS_FS_IOCTL_DEV;
// What hard_requirement insists on for any ruleset: the V2 set OpenShell pins (spec §2.1), so a
// policy that worked there (e.g. on Linux 6.1) still starts here. Newer rights are used when the
// kernel has them; devices additionally need IOCTL_DEV.
constexpr uint64_t kRequiredRights = fs_rights_for_abi(2);

// struct landlock_ruleset_attr as of ABI 6; the header's copy may be the one-field ABI-1 one.
// Older kernels accept the longer struct as long as the fields they do not know are zero.
struct RulesetAttr {
  uint64_t handled_access_fs = 0;
  uint64_t handled_access_net = 0;
  uint64_t scoped = 0;
};

// Owns one path fd for the time it takes to add its rule.
class PathFd {
 public:
  explicit PathFd(int fd) : fd_(fd) {}
  ~PathFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  PathFd(const PathFd&) = delete;
  PathFd& operator=(const PathFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string right_names(uint64_t mask) {
  std::string names;
  for (const FsRight& right : kFsRights) {
    if ((mask & right.bit) == 0) continue;
    if (!names.empty()) names += ", ";
    names += fmt::format("{} (ABI {})", right.name, right.abi);
  }
  return names;
}

// The test/diagnostic cap from the environment, if set and valid.
std::optional<int> max_abi_override(const core::Logger& log) {
  const char* text = std::getenv(kMaxAbiVariable);
  if (text == nullptr) return std::nullopt;
  const std::string_view view(text);
  int value = -1;
  const auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (ec != std::errc() || end != view.data() + view.size() || value < 0) {
    log.warn("Landlock: ignoring {}='{}' (expected a non-negative integer)", kMaxAbiVariable, view);
    return std::nullopt;
  }
  return value;
}

// Opens `path` and adds its rule; the error text on failure (the path is the caller's to name).
std::optional<std::string> add_path_rule(int ruleset_fd, const std::string& path, uint64_t access,
                                         uint64_t handled) {
  // O_PATH: no read permission needed on the object itself, only search on its parents, and the
  // parent is still root here (spec §2.2: mode-0700 directories work).
  const PathFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (fd.get() < 0) return errno_text(errno);
  // fstat on the same fd that goes into the rule: no window for the path to change kind.
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return "fstat: " + errno_text(errno);
  landlock_path_beneath_attr attr{};
  attr.allowed_access = access & handled;
  if (!S_ISDIR(st.st_mode)) attr.allowed_access &= kFileRights;
  attr.parent_fd = fd.get();
  if (::syscall(SYS_landlock_add_rule, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &attr, 0) != 0)
    return "landlock_add_rule: " + errno_text(errno);
  return std::nullopt;
}

}  // namespace

LandlockSupport probe_landlock() {
  const long abi =
      ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi >= 0) return {static_cast<int>(abi), {}};
  const int err = errno;
  switch (err) {
    case ENOSYS:
      return {0, "Landlock not implemented by this kernel (ENOSYS: kernel < 5.13, or gVisor)"};
    case EOPNOTSUPP:
      return {0, "Landlock built into the kernel but not in the active LSM list (EOPNOTSUPP)"};
    case EPERM:
      return {0, "landlock_create_ruleset blocked by an outer seccomp profile (EPERM)"};
    default:
      return {0,
              fmt::format("landlock_create_ruleset failed: {} (errno {})", errno_text(err), err)};
  }
}

LandlockRuleset::~LandlockRuleset() {
  if (fd_ >= 0) ::close(fd_);
}

LandlockRuleset::LandlockRuleset(LandlockRuleset&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), abi_(std::exchange(other.abi_, 0)) {}

LandlockRuleset& LandlockRuleset::operator=(LandlockRuleset&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    abi_ = std::exchange(other.abi_, 0);
  }
  return *this;
}

Result<LandlockRuleset> prepare_landlock(const FilesystemRules& rules, core::Logger& log) {
  if (rules.read_only.empty() && rules.read_write.empty() && rules.devices.empty()) {
    log.info("Landlock: no paths configured, filesystem not restricted");
    return LandlockRuleset{};
  }
  const bool hard = rules.compatibility == LandlockCompatibility::kHardRequirement;

  // Negotiate: the kernel's ABI, capped by what this code knows and by the test knob.
  LandlockSupport support = probe_landlock();
  int abi = std::min(support.abi, kKnownMaxAbi);
  std::string cap_note;
  if (const std::optional<int> cap = max_abi_override(log); cap && *cap < abi) {
    abi = *cap;
    cap_note = fmt::format(" (capped by {}={})", kMaxAbiVariable, *cap);
    if (abi == 0) support.unavailable_reason = "disabled by " + std::string(kMaxAbiVariable) + "=0";
  }
  if (abi == 0) {
    if (hard)
      return make_error(Errc::kUnavailable, "Landlock: unavailable in hard_requirement mode: " +
                                                support.unavailable_reason);
    // Spec §2.3: a High finding, and the sandbox runs without filesystem restrictions.
    log.emit(
        core::events::finding("landlock-unavailable",
                              "Landlock: unavailable, running without filesystem restrictions: " +
                                  support.unavailable_reason,
                              core::Severity::kHigh, core::Confidence::kHigh));
    return LandlockRuleset{};
  }

  const uint64_t handled = fs_rights_for_abi(abi);
  const uint64_t required =
      kRequiredRights | (rules.devices.empty() ? uint64_t{0} : LANDLOCK_ACCESS_FS_IOCTL_DEV);
  if (const uint64_t missing = required & ~handled; missing != 0) {
    if (hard)
      return make_error(Errc::kUnavailable,
                        fmt::format("Landlock: rights unavailable in hard_requirement mode: {}; "
                                    "kernel ABI {}{}",
                                    right_names(missing), abi, cap_note));
    for (const FsRight& right : kFsRights)
      if ((missing & right.bit) != 0)
        log.warn("Landlock: right {} needs ABI {}, kernel ABI {}{}; continuing without it",
                 right.name, right.abi, abi, cap_note);
  }
  if (const uint64_t extra = fs_rights_for_abi(kKnownMaxAbi) & ~handled & ~required; extra != 0)
    log.info("Landlock: ABI {}{} does not handle {}", abi, cap_note, right_names(extra));

  RulesetAttr attr;
  attr.handled_access_fs = handled;
  if (rules.scope_ipc) {
    if (abi >= kScopeAbi)
      attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
    else  // hardening beyond the policy, used when present: never a failure
      log.info("Landlock: ABI {}{} cannot scope signals and abstract unix sockets (needs ABI {})",
               abi, cap_note, kScopeAbi);
  }
  const long fd = ::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (fd < 0) {
    const std::string reason = "landlock_create_ruleset: " + errno_text(errno);
    if (hard) return make_error(Errc::kSyscall, "Landlock: " + reason);
    log.warn("Landlock: {}; running without filesystem restrictions", reason);
    return LandlockRuleset{};
  }
  LandlockRuleset ruleset(static_cast<int>(fd), abi);

  // One bad path skips that path only: dropping the whole ruleset for one missing /app is what
  // OpenShell #664 fixed.
  struct List {
    std::string_view name;
    const std::vector<std::string>& paths;
    uint64_t access;
  };
  const List lists[] = {{"read_only", rules.read_only, kReadRights},
                        {"read_write", rules.read_write, handled},
                        {"devices", rules.devices, kDeviceRights}};
  int added = 0;
  for (const List& list : lists) {
    for (const std::string& path : list.paths) {
      const std::optional<std::string> failure =
          add_path_rule(ruleset.fd(), path, list.access, handled);
      if (!failure) {
        ++added;
        continue;
      }
      if (hard)
        return make_error(
            Errc::kUnavailable,
            fmt::format("Landlock: path unavailable in hard_requirement mode: {} ({})", path,
                        *failure));
      log.warn("Landlock: skipping {} path {} ({})", list.name, path, *failure);
    }
  }
  if (added == 0) {
    // An empty ruleset would deny every handled access: refuse it (spec §2.3).
    if (hard)
      return make_error(Errc::kUnavailable, "Landlock: no usable path in hard_requirement mode");
    log.warn("Landlock: no configured path could be used; running without filesystem restrictions");
    return LandlockRuleset{};
  }
  log.info("Landlock: ruleset ready, {} rules, ABI {}{}", added, abi, cap_note);
  return ruleset;
}

int apply_landlock(const LandlockRuleset& ruleset) noexcept {
  if (!ruleset.active()) return 0;
  // Without CAP_SYS_ADMIN, restrict_self requires no_new_privs; the child drops privileges first.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) != 0) return errno;
  if (::syscall(SYS_landlock_restrict_self, ruleset.fd(), 0U) != 0) return errno;
  return 0;
}

}  // namespace openshell::runtime
