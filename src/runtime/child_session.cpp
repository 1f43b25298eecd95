// A session joining a running sandbox (issue 9: SSH sessions): the joiner the spawner forks enters
// the sandbox's namespaces with setns(2) and clones the session process, which then runs exactly
// the main process's steps (run_main). Between fork and exec: system calls only, apart from the
// Landlock ruleset, which the joiner (a fork of the single-threaded spawner) may allocate.
//
// Lifecycle: a process that joins a pid namespace stays outside it; only its children are inside.
// So the joiner clones with CLONE_PARENT: the session process is the spawner's child (the spawner
// reaps it and sends its exit notice like a sandbox's) and a member of the sandbox's pid
// namespace (the kernel SIGKILLs it with everything else when the sandbox's init exits). Its
// parent-death signal fires when the spawner dies.
//
// The bypass monitor's notification filter is not inherited from the init (the session is not
// its descendant): the joiner installs a fresh one on itself before it clones the session, and
// hands that listener to the spawner like the init does, so a session's attempts to leave are
// reported as the main process's are.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "child_plan.hpp"
#include "openshell/runtime/spawner.hpp"

namespace openshell::runtime::child {

void run_session(const Plan& plan) noexcept {
  if (::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL), 0UL, 0UL, 0UL) != 0) {
    fail(plan, "session: PR_SET_PDEATHSIG", errno);
  }
  // One call joins them all at once (Linux 5.8: setns with a pidfd), the user namespace first,
  // which gives us the capabilities to join the namespaces it owns. Joining the mount namespace
  // also moves our root and working directory to the sandbox's.
  if (::setns(plan.join_pidfd, plan.join_flags) != 0) fail(plan, "session: setns", errno);
  ::close(plan.join_pidfd);
  const LandlockRuleset landlock = prepare_ruleset(plan);
  if (plan.bypass_filter != nullptr) hand_over_bypass_listener(plan);

  const long session = ::syscall(SYS_clone, static_cast<unsigned long>(CLONE_PARENT), nullptr,
                                 nullptr, nullptr, nullptr);
  if (session < 0) fail(plan, "session: clone", errno);
  if (session == 0) run_main(plan, landlock);

  Report record;
  record.kind = kReportSessionPid;
  record.err = static_cast<int32_t>(session);
  ssize_t written;
  do {
    written = ::write(plan.report_fd, &record, sizeof record);
  } while (written < 0 && errno == EINTR);
  ::_exit(written == static_cast<ssize_t>(sizeof record) ? 0 : kExitSetupFailed);
}

}  // namespace openshell::runtime::child
