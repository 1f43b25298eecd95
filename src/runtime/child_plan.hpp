// What a sandbox's init and main process need between fork and exec. The spawner prepares it
// completely beforehand (C strings, pointer arrays, ids), so the children only make system calls:
// no allocation, no locks, no NSS (DESIGN.md "Processes", runtime-spec §4.3).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "openshell/runtime/landlock.hpp"
#include "openshell/runtime/seccomp.hpp"

namespace openshell::runtime::child {

// One record on the report pipe. Fixed size (below PIPE_BUF) so every write is atomic and the
// reader never sees half a record; the reader turns `err` into strerror text.
struct Report {
  uint32_t kind = 0;
  int32_t err = 0;  // 0: `step` is the whole message
  char step[240] = {};
};
inline constexpr uint32_t kReportFatal = 1;
inline constexpr uint32_t kReportWarning = 2;
// A session's joiner announces the session process: `err` carries its pid (see run_session).
inline constexpr uint32_t kReportSessionPid = 3;

struct Plan {
  // The main process.
  const char* program = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* workdir = nullptr;  // nullptr: stay where the spawner is
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  size_t group_count = 0;
  bool user_namespace = false;  // rootless: ids are already ours, setgroups is denied
  bool tty = false;
  int stdio[3] = {-1, -1, -1};

  // The namespaces the init sets up.
  bool new_network = false;
  bool proxy_listener = false;
  const char* const* private_dirs = nullptr;
  size_t private_count = 0;
  const char* const* masked_dirs = nullptr;
  size_t masked_count = 0;

  // Channels to the spawner.
  int report_fd = -1;    // close-on-exec pipe: Report records; EOF once the program is exec'd
  int sync_fd = -1;      // rootless: one byte arrives once uid_map and gid_map are written
  int handover_fd = -1;  // the init's end of a socketpair: the listener goes back on it; its
                         // hang-up also tells the init that the spawner is gone

  // Security layers: the seccomp program is ready; the Landlock rules are resolved by the init
  // inside the mount namespace (see SpawnerConfig). nullptr: no Landlock.
  const FilesystemRules* landlock_rules = nullptr;
  const SeccompProgram* seccomp = nullptr;
  // The bypass monitor's filter, installed by the init so every process of the sandbox carries
  // it; its listener goes to the spawner (see hand_over_bypass_listener). nullptr: no monitor.
  const SeccompProgram* bypass_filter = nullptr;

  // A session joining a running sandbox (run_session) instead of a new sandbox: setns(2) into the
  // namespaces of the init behind `join_pidfd` (CLONE_NEW* flags in `join_flags`). Its parent is
  // the spawner, outside the sandbox's pid namespace.
  bool session = false;
  int join_pidfd = -1;
  int join_flags = 0;
};

// Writes one record: `step` and `detail` (e.g. a path) joined by a space, truncated to fit.
void report(int fd, uint32_t kind, const char* step, const char* detail, int err) noexcept;
// Reports a fatal step and exits 125 (kExitSetupFailed).
[[noreturn]] void fail(const Plan& plan, const char* step, int err,
                       const char* detail = nullptr) noexcept;
// Default dispositions for every signal and an empty mask; 0 or an errno value.
int reset_signal_state() noexcept;

// The sandbox's first process, pid 1 of its pid namespace: mounts, loopback, the proxy listener,
// then forks the main process, hardens itself, reaps every process and forwards signals to the
// main process group; exits with the main process's code (128+N for signal N).
[[noreturn]] void run_init(const Plan& plan) noexcept;

// The main process: session, working directory, privilege drop, Landlock (with the ruleset the
// init prepared; inactive: none), seccomp, fds, exec.
[[noreturn]] void run_main(const Plan& plan, const LandlockRuleset& landlock) noexcept;

// Builds the Landlock ruleset from the paths as the current mount namespace shows them; fatal
// (reported) on a hard_requirement failure. Allocates: only in a fork of the spawner.
LandlockRuleset prepare_ruleset(const Plan& plan);

// Installs the bypass monitor's filter (plan.bypass_filter) on the calling process, which its
// children inherit, and hands the listener to the spawner over plan.handover_fd. Fatal
// (reported) on failure.
void hand_over_bypass_listener(const Plan& plan);

// A session's joiner, forked by the spawner: joins the sandbox's namespaces, prepares Landlock
// there, then clones the session process as the spawner's own child (CLONE_PARENT, so the
// spawner reaps it), reports its pid and exits. The session process runs run_main.
[[noreturn]] void run_session(const Plan& plan) noexcept;

}  // namespace openshell::runtime::child
