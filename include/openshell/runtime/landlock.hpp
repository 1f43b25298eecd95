// Landlock (runtime-spec §2): the ruleset is built in the parent, before fork, from path fds the
// (still privileged) parent opens; the child only calls restrict_self after its privilege drop.
#pragma once

#include <string>
#include <vector>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"

namespace openshell::runtime {

enum class LandlockCompatibility { kBestEffort, kHardRequirement };

// Members all have initializers so designated initializers may name any subset (no
// -Wmissing-field-initializers).
struct FilesystemRules {
  std::vector<std::string> read_only{};   // absolute paths; read = READ_FILE|READ_DIR|EXECUTE
  std::vector<std::string> read_write{};  // all handled rights
  LandlockCompatibility compatibility = LandlockCompatibility::kBestEffort;
  // Character devices the runtime hands the child (its PTY): read/write plus IOCTL_DEV.
  std::vector<std::string> devices{};
  // Scope abstract unix sockets and signals to the sandbox (ABI >= 6), when the kernel has it.
  bool scope_ipc = true;
};

// Highest Landlock ABI the kernel offers (0: none), and why not when 0.
struct LandlockSupport {
  int abi = 0;
  std::string unavailable_reason;  // ENOSYS / EOPNOTSUPP / EPERM wording of spec §2.1
};
LandlockSupport probe_landlock();

// A ready ruleset: an fd the child passes to landlock_restrict_self (-1: Landlock not applied,
// which best_effort allows and reports).
class LandlockRuleset {
 public:
  LandlockRuleset() = default;
  explicit LandlockRuleset(int fd, int abi) : fd_(fd), abi_(abi) {}
  ~LandlockRuleset();
  LandlockRuleset(LandlockRuleset&& other) noexcept;
  LandlockRuleset& operator=(LandlockRuleset&& other) noexcept;
  LandlockRuleset(const LandlockRuleset&) = delete;
  LandlockRuleset& operator=(const LandlockRuleset&) = delete;

  int fd() const { return fd_; }
  int abi() const { return abi_; }
  bool active() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  int abi_ = 0;
};

// Parent side, before fork. best_effort: every degradation (no Landlock, a right the ABI lacks,
// a path that cannot be opened) is a warning on `log` naming it; hard_requirement: an error
// naming the layer ("Landlock: ...") and the path or right. Empty rules: no ruleset (info log).
//
// The ABI used is min(kernel, 7). hard_requirement needs the V2 rights OpenShell pins (spec
// §2.1) plus IOCTL_DEV (ABI 5) when `devices` is non-empty; newer rights (TRUNCATE, IOCTL_DEV)
// are handled whenever the kernel has them, and IPC scoping (ABI 6) is never required.
//
// Test/diagnostic knob: OPENSHELL_LANDLOCK_MAX_ABI=N caps the negotiated ABI at N, simulating an
// older kernel (0: no Landlock at all). It can only lower the ABI, never raise it.
Result<LandlockRuleset> prepare_landlock(const FilesystemRules& rules, core::Logger& log);

// Child side, between fork and exec: async-signal-safe (raw syscalls only). Sets no_new_privs
// (required by Landlock without CAP_SYS_ADMIN) and restricts the calling thread. Returns 0 or
// an errno value.
int apply_landlock(const LandlockRuleset& ruleset) noexcept;

}  // namespace openshell::runtime
