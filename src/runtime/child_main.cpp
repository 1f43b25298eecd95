// The sandbox's main process between fork and exec, in the order of runtime-spec §4.3 (adapted:
// the namespaces already exist, the init made them): session, working directory, privilege drop,
// core/dump hardening, parent-death signal, Landlock, seccomp, fds, exec. System calls only.
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "child_plan.hpp"
#include "openshell/runtime/spawner.hpp"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace openshell::runtime::child {
namespace {

// Capability numbers are below 64; the kernel answers EINVAL past its last one.
constexpr unsigned long kMaxCapabilities = 64;

// Empties the bounding set. Fails closed: the set must read empty afterwards. EPERM is tolerated
// only if it is empty already (a rootless runtime without CAP_SETPCAP, OpenShell #2069).
void clear_bounding_set(const Plan& plan) {
  for (unsigned long cap = 0; cap < kMaxCapabilities; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0UL, 0UL, 0UL) == 0) continue;
    if (errno == EINVAL) break;
    if (errno != EPERM) fail(plan, "privilege drop: PR_CAPBSET_DROP", errno);
  }
  for (unsigned long cap = 0; cap < kMaxCapabilities; ++cap) {
    const int present = ::prctl(PR_CAPBSET_READ, cap, 0UL, 0UL, 0UL);
    if (present < 0) break;  // EINVAL: past the last capability
    if (present != 0) fail(plan, "privilege drop: capability bounding set not empty", EPERM);
  }
}

void drop_privileges(const Plan& plan) {
  // Rootless: /proc/<pid>/setgroups says "deny" (needed to map our gid), and the ids are
  // already ours; setgroups would fail and the supplementary groups stay what they were.
  if (!plan.user_namespace && ::syscall(SYS_setgroups, plan.group_count, plan.groups) != 0) {
    fail(plan, "privilege drop: setgroups", errno);
  }
  if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) {
    fail(plan, "privilege drop: setresgid", errno);
  }
  if (::getegid() != plan.gid) fail(plan, "privilege drop: gid did not change", EPERM);
  clear_bounding_set(plan);
  // Ambient capabilities survive execve of unprivileged programs; none may.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0UL, 0UL, 0UL) != 0 && errno != EINVAL) {
    fail(plan, "privilege drop: PR_CAP_AMBIENT_CLEAR_ALL", errno);
  }
  if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) {
    fail(plan, "privilege drop: setresuid", errno);
  }
  if (::geteuid() != plan.uid) fail(plan, "privilege drop: uid did not change", EPERM);
  // Leaving uid 0 emptied the permitted and effective sets; a rootless process keeps its
  // namespace capabilities until we clear them, and nobody clears the inheritable set for us.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (::syscall(SYS_capset, &header, none) != 0) fail(plan, "privilege drop: capset", errno);
  if (::syscall(SYS_setuid, 0) == 0) {
    fail(plan, "privilege drop: setuid(0) succeeded, root could be regained", EPERM);
  }
}

// Every fd but stdio closes at exec. CLOSE_RANGE_CLOEXEC (5.11) keeps the report pipe usable
// should execve fail; without it, everything but the pipe is closed now.
void close_other_fds(const Plan& plan) {
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  const unsigned report = static_cast<unsigned>(plan.report_fd);
  if (report > 3 && ::syscall(SYS_close_range, 3U, report - 1, 0U) != 0) {
    fail(plan, "close_range", errno);
  }
  if (::syscall(SYS_close_range, report + 1, ~0U, 0U) != 0) fail(plan, "close_range", errno);
}

}  // namespace

void run_main(const Plan& plan, const LandlockRuleset& landlock) noexcept {
  // The init's handlers and ignored signals must not reach the program.
  if (const int err = reset_signal_state(); err != 0) fail(plan, "reset signals", err);

  for (int target = 0; target < 3; ++target) {
    if (::dup2(plan.stdio[target], target) < 0) fail(plan, "dup2 stdio", errno);
  }
  // A new session in both modes: without a controlling terminal a pipe-mode child cannot
  // TIOCSTI keystrokes into the caller's terminal (CVE-2017-5226), and its pid is its pgid.
  if (::setsid() < 0) fail(plan, "setsid", errno);
  if (plan.tty && ::ioctl(0, TIOCSCTTY, 0) != 0) fail(plan, "ioctl TIOCSCTTY", errno);

  // Before the drop, as the spec says: a workdir the sandbox user cannot traverse still works.
  if (plan.workdir != nullptr && ::chdir(plan.workdir) != 0) {
    fail(plan, "chdir", errno, plan.workdir);
  }

  drop_privileges(plan);

  const rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) fail(plan, "setrlimit RLIMIT_CORE", errno);
  if (::prctl(PR_SET_DUMPABLE, 0UL, 0UL, 0UL, 0UL) != 0) fail(plan, "PR_SET_DUMPABLE", errno);

  // Armed after the drop (a credential change clears it), then the parent re-checked: if the
  // init died in between, we were reparented and must not go on alone.
  if (::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL), 0UL, 0UL, 0UL) != 0) {
    fail(plan, "PR_SET_PDEATHSIG", errno);
  }
  // A session's parent is the spawner, outside the pid namespace (getppid() says 0); once it is
  // gone the session is reparented to the sandbox's init and getppid() says 1.
  if (::getppid() != (plan.session ? 0 : 1)) {
    fail(plan,
         plan.session ? "parent check: the spawner is gone"
                      : "parent check: the sandbox init is gone",
         ESRCH);
  }

  if (landlock.active()) {
    if (const int err = apply_landlock(landlock); err != 0) {
      if (plan.landlock_rules->compatibility == LandlockCompatibility::kHardRequirement) {
        fail(plan, "Landlock: landlock_restrict_self", err);
      }
      report(plan.report_fd, kReportWarning, "Landlock: landlock_restrict_self", nullptr, err);
    }
  }
  if (const int err = apply_seccomp(*plan.seccomp); err != 0) fail(plan, "seccomp", err);

  close_other_fds(plan);
  ::execve(plan.program, plan.argv, plan.envp);
  const int err = errno;
  report(plan.report_fd, kReportFatal, "execve", plan.program, err);
  ::_exit(err == ENOENT ? kExitNotFound : kExitCannotExecute);
}

}  // namespace openshell::runtime::child
