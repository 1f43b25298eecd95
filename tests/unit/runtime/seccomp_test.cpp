// The child seccomp filter (runtime-spec §3, checklist SEC-01..23) against the real kernel: each
// probe runs in a forked child (a filter cannot be removed) and reports over a pipe.
#include "openshell/runtime/seccomp.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

using openshell::runtime::apply_seccomp;
using openshell::runtime::build_seccomp;
using openshell::runtime::SeccompOptions;
using openshell::runtime::SeccompProgram;

namespace {

// What a probe child did: the value it wrote (0 or an errno) if it got that far, and how it ended.
struct Outcome {
  bool reported = false;
  int apply_error = 0;
  int value = -1;
  int status = 0;

  bool killed_by(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
};

// Runs `probe` in a forked child, under `program` unless it is null (the unfiltered baseline).
Outcome run_probe(const SeccompProgram* program, const std::function<int()>& probe) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    const rlimit no_core{0, 0};  // SIGSYS would dump core
    ::setrlimit(RLIMIT_CORE, &no_core);
    int report[2] = {program ? apply_seccomp(*program) : 0, -1};
    if (report[0] == 0) report[1] = probe();
    (void)!::write(fds[1], report, sizeof report);
    ::_exit(0);
  }
  ::close(fds[1]);
  Outcome outcome;
  int report[2];
  outcome.reported = ::read(fds[0], report, sizeof report) == static_cast<ssize_t>(sizeof report);
  ::close(fds[0]);
  REQUIRE(::waitpid(pid, &outcome.status, 0) == pid);
  if (outcome.reported) {
    outcome.apply_error = report[0];
    outcome.value = report[1];
  }
  return outcome;
}

// 0 for success, else errno: the probes' common return.
int errno_of(long rc) {
  return rc < 0 ? errno : 0;
}

int raw_socket(long family, int type, int protocol) {
  return errno_of(::syscall(SYS_socket, family, type, protocol));
}

// A fork-like raw clone or clone3 that succeeded returns 0 in the new process: end it there.
int fork_like(long rc) {
  if (rc == 0) ::_exit(0);
  if (rc > 0) ::waitpid(static_cast<pid_t>(rc), nullptr, 0);
  return errno_of(rc);
}

SeccompProgram child_program(SeccompOptions options = {}) {
  auto program = build_seccomp(options);
  INFO((program.ok() ? std::string() : program.error().message));
  REQUIRE(program.ok());
  return std::move(program).value();
}

struct Probe {
  const char* name;
  std::function<int()> run;
};

// Every probe reports `expected` from inside the filter.
void expect_all(const SeccompProgram& program, const std::vector<Probe>& probes,
                int expected = EPERM) {
  for (const auto& probe : probes) {
    INFO(probe.name);
    const Outcome outcome = run_probe(&program, probe.run);
    REQUIRE(outcome.reported);
    REQUIRE(outcome.apply_error == 0);
    CHECK(outcome.value == expected);
  }
}

// Every probe behaves as it does without the filter.
void expect_unchanged(const SeccompProgram& program, const std::vector<Probe>& probes) {
  for (const auto& probe : probes) {
    INFO(probe.name);
    const Outcome baseline = run_probe(nullptr, probe.run);
    const Outcome filtered = run_probe(&program, probe.run);
    REQUIRE(filtered.reported);
    REQUIRE(filtered.apply_error == 0);
    CHECK(filtered.value == baseline.value);
  }
}

}  // namespace

TEST_CASE("build_seccomp checks the architecture before anything else", "[seccomp]") {
  const SeccompProgram program = child_program();
  REQUIRE_FALSE(program.instructions.empty());
  CHECK(program.instructions.size() <= BPF_MAXINSNS);
  const sock_filter& first = program.instructions.front();
  CHECK(first.code == (BPF_LD | BPF_W | BPF_ABS));
  CHECK(first.k == offsetof(seccomp_data, arch));
  CHECK(program.instructions.back().code == (BPF_RET | BPF_K));
}

TEST_CASE("apply_seccomp refuses an empty program", "[seccomp]") {
  CHECK(apply_seccomp(SeccompProgram{}) == EINVAL);
}

TEST_CASE("seccomp denies socket families outside the allowlist", "[seccomp]") {
  const SeccompProgram program = child_program();
  expect_all(
      program,
      {
          {"AF_PACKET", [] { return raw_socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)); }},
          // The kernel reads an int: upper bits must not hide AF_PACKET from the filter.
          {"AF_PACKET | 1<<32", [] { return raw_socket(0x1'0000'0000L | AF_PACKET, SOCK_RAW, 0); }},
          {"AF_BLUETOOTH", [] { return raw_socket(AF_BLUETOOTH, SOCK_RAW, 0); }},
          {"AF_VSOCK", [] { return raw_socket(AF_VSOCK, SOCK_STREAM, 0); }},
          {"NETLINK_SOCK_DIAG", [] { return raw_socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG); }},
          {"NETLINK_AUDIT", [] { return raw_socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT); }},
          {"NETLINK_GENERIC", [] { return raw_socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC); }},
          {"AF_INET SOCK_RAW", [] { return raw_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }},
          {"AF_INET SOCK_RAW|CLOEXEC",
           [] { return raw_socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW); }},
          {"AF_INET6 SOCK_RAW", [] { return raw_socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6); }},
      });
  expect_unchanged(
      program,
      {
          {"AF_INET SOCK_STREAM", [] { return raw_socket(AF_INET, SOCK_STREAM, 0); }},
          {"AF_INET SOCK_DGRAM", [] { return raw_socket(AF_INET, SOCK_DGRAM, 0); }},
          {"AF_INET6 SOCK_STREAM", [] { return raw_socket(AF_INET6, SOCK_STREAM, 0); }},
          {"AF_UNIX", [] { return raw_socket(AF_UNIX, SOCK_STREAM, 0); }},
          {"NETLINK_ROUTE", [] { return raw_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE); }},
      });
  CHECK(run_probe(&program, [] { return raw_socket(AF_INET, SOCK_STREAM, 0); }).value == 0);
  CHECK(run_probe(&program, [] { return raw_socket(AF_UNIX, SOCK_STREAM, 0); }).value == 0);
}

TEST_CASE("seccomp without allow_inet denies IP sockets too", "[seccomp]") {
  const SeccompProgram program = child_program(SeccompOptions{.allow_inet = false});
  expect_all(program,
             {
                 {"AF_INET SOCK_STREAM", [] { return raw_socket(AF_INET, SOCK_STREAM, 0); }},
                 {"AF_INET6 SOCK_DGRAM", [] { return raw_socket(AF_INET6, SOCK_DGRAM, 0); }},
             });
  expect_unchanged(program, {
                                {"AF_UNIX", [] { return raw_socket(AF_UNIX, SOCK_STREAM, 0); }},
                            });
}

TEST_CASE("seccomp denies the listed syscalls with EPERM", "[seccomp]") {
  // Arguments are chosen so that, should the filter miss, the call is harmless (no mount, no
  // kexec) and, for root, does not answer EPERM itself.
  static constexpr const char* kMissing = "/nonexistent-openshell-seccomp-test";
  expect_all(
      child_program(),
      {
          {"ptrace", [] { return errno_of(::syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0)); }},
          {"bpf", [] { return errno_of(::syscall(SYS_bpf, 5 /*BPF_PROG_LOAD*/, nullptr, 0)); }},
          {"memfd_create", [] { return errno_of(::syscall(SYS_memfd_create, "x", 0)); }},
          {"process_vm_readv",
           [] {
             return errno_of(
                 ::syscall(SYS_process_vm_readv, ::getpid(), nullptr, 0, nullptr, 0, 0));
           }},
          {"process_vm_writev",
           [] {
             return errno_of(
                 ::syscall(SYS_process_vm_writev, ::getpid(), nullptr, 0, nullptr, 0, 0));
           }},
          {"pidfd_open", [] { return errno_of(::syscall(SYS_pidfd_open, ::getpid(), 0)); }},
          {"pidfd_getfd", [] { return errno_of(::syscall(SYS_pidfd_getfd, -1, 0, 0)); }},
          {"pidfd_send_signal",
           [] { return errno_of(::syscall(SYS_pidfd_send_signal, -1, 0, nullptr, 0)); }},
          {"io_uring_setup", [] { return errno_of(::syscall(SYS_io_uring_setup, 0, nullptr)); }},
          {"mount",
           [] { return errno_of(::syscall(SYS_mount, "none", kMissing, "tmpfs", 0, nullptr)); }},
          {"umount2", [] { return errno_of(::syscall(SYS_umount2, kMissing, 0)); }},
          {"pivot_root", [] { return errno_of(::syscall(SYS_pivot_root, kMissing, kMissing)); }},
          {"fsopen", [] { return errno_of(::syscall(SYS_fsopen, "no-such-fs-type", 0)); }},
          {"fsconfig",
           [] { return errno_of(::syscall(SYS_fsconfig, -1, 0, nullptr, nullptr, 0)); }},
          {"fsmount", [] { return errno_of(::syscall(SYS_fsmount, -1, 0, 0)); }},
          {"fspick", [] { return errno_of(::syscall(SYS_fspick, AT_FDCWD, kMissing, 0)); }},
          {"open_tree", [] { return errno_of(::syscall(SYS_open_tree, AT_FDCWD, kMissing, 0)); }},
          {"move_mount", [] { return errno_of(::syscall(SYS_move_mount, -1, "", -1, "", 0)); }},
          {"setns", [] { return errno_of(::syscall(SYS_setns, -1, CLONE_NEWNET)); }},
          {"userfaultfd", [] { return errno_of(::syscall(SYS_userfaultfd, O_CLOEXEC)); }},
          {"perf_event_open",
           [] { return errno_of(::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0)); }},
          {"init_module", [] { return errno_of(::syscall(SYS_init_module, nullptr, 0, "")); }},
          {"finit_module", [] { return errno_of(::syscall(SYS_finit_module, -1, "", 0)); }},
          {"delete_module",
           [] {
             return errno_of(::syscall(SYS_delete_module, "openshell_no_such_module", O_NONBLOCK));
           }},
          {"kexec_load", [] { return errno_of(::syscall(SYS_kexec_load, 0, 0, nullptr, ~0UL)); }},
          {"kexec_file_load",
           [] { return errno_of(::syscall(SYS_kexec_file_load, -1, -1, 0, nullptr, ~0UL)); }},
      });
}

TEST_CASE("seccomp denies user namespaces, fileless exec and nested filters", "[seccomp]") {
  const SeccompProgram program = child_program();
  expect_all(program,
             {
                 {"unshare(CLONE_NEWUSER)",
                  [] { return errno_of(::syscall(SYS_unshare, CLONE_NEWUSER)); }},
                 {"unshare(CLONE_NEWUSER|CLONE_NEWNS)",
                  [] { return errno_of(::syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS)); }},
                 {"clone(CLONE_NEWUSER)",
                  [] {
                    return fork_like(::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr,
                                               nullptr, 0));
                  }},
                 {"execveat(AT_EMPTY_PATH)",
                  [] {
                    const int fd = ::open("/bin/true", O_PATH | O_CLOEXEC);
                    char* const argv[] = {const_cast<char*>("true"), nullptr};
                    char* const envp[] = {nullptr};
                    return errno_of(::syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH));
                  }},
                 {"seccomp(SET_MODE_FILTER)",
                  [] {
                    sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
                    sock_fprog fprog{1, &allow};
                    return errno_of(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog));
                  }},
             });
  // Spec §3.2 blocks only the user namespace; other namespaces stay as the kernel decides.
  expect_unchanged(program, {
                                {"unshare(CLONE_NEWNS)",
                                 [] { return errno_of(::syscall(SYS_unshare, CLONE_NEWNS)); }},
                            });
}

TEST_CASE("seccomp answers clone3 with ENOSYS so glibc falls back to clone", "[seccomp]") {
  expect_all(child_program(),
             {{"clone3",
               [] {
                 // struct clone_args, version 0 (64 bytes): flags, pidfd, child_tid,
                 // parent_tid, exit_signal, stack, stack_size, tls.
                 uint64_t args[8] = {0, 0, 0, 0, SIGCHLD, 0, 0, 0};
                 return fork_like(::syscall(SYS_clone3, args, sizeof args));
               }}},
             ENOSYS);
}

TEST_CASE("processes and threads still start under the filter", "[seccomp]") {
  const SeccompProgram program = child_program();
  expect_all(program,
             {
                 {"fork + execve /bin/true",
                  [] {
                    const pid_t pid = ::fork();
                    if (pid == 0) {
                      char* const argv[] = {const_cast<char*>("true"), nullptr};
                      ::execve("/bin/true", argv, environ);
                      ::_exit(127);
                    }
                    int status = 0;
                    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return errno;
                    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                  }},
                 {"posix_spawn /bin/true (clone3, then clone)",
                  [] {
                    pid_t pid = 0;
                    char* const argv[] = {const_cast<char*>("true"), nullptr};
                    const int rc =
                        ::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
                    int status = 0;
                    if (rc != 0) return rc;
                    ::waitpid(pid, &status, 0);
                    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                  }},
                 {"pthread_create (clone3, then clone)",
                  [] {
                    pthread_t thread;
                    const int rc = ::pthread_create(
                        &thread, nullptr, [](void*) -> void* { return nullptr; }, nullptr);
                    return rc != 0 ? rc : ::pthread_join(thread, nullptr);
                  }},
                 {"/proc/self/status shows Seccomp 2 and NoNewPrivs 1",
                  [] {
                    std::ifstream status("/proc/self/status");
                    bool nnp = false;
                    bool filter = false;
                    for (std::string line; std::getline(status, line);) {
                      nnp = nnp || line == "NoNewPrivs:\t1";
                      filter = filter || line == "Seccomp:\t2";
                    }
                    return nnp && filter ? 0 : 1;
                  }},
             },
             0);
}

#if defined(__x86_64__)
TEST_CASE("seccomp kills x32 and i386 system calls", "[seccomp]") {
  const SeccompProgram program = child_program();
  constexpr long kX32Bit = 0x40000000;  // __X32_SYSCALL_BIT

  // Same AUDIT_ARCH_X86_64, number with bit 30 set: killed whether or not the kernel has x32.
  const Outcome getpid =
      run_probe(&program, [] { return errno_of(::syscall(kX32Bit | SYS_getpid)); });
  CHECK_FALSE(getpid.reported);
  CHECK(getpid.killed_by(SIGSYS));
  const Outcome packet = run_probe(
      &program, [] { return errno_of(::syscall(kX32Bit | SYS_socket, AF_PACKET, SOCK_RAW, 0)); });
  CHECK_FALSE(packet.reported);
  CHECK(packet.killed_by(SIGSYS));

  // i386 getpid (20) through int 0x80: AUDIT_ARCH_I386, the bad-arch action.
  const auto int80_getpid = [] {
    long pid = 20;
    asm volatile("int $0x80" : "+a"(pid) : : "memory", "r8", "r9", "r10", "r11");
    return pid == ::getpid() ? 0 : 1;
  };
  const Outcome baseline = run_probe(nullptr, int80_getpid);
  if (!baseline.reported || baseline.value != 0) {
    WARN("kernel without IA-32 emulation: int 0x80 not tested");
    return;
  }
  const Outcome i386 = run_probe(&program, int80_getpid);
  CHECK_FALSE(i386.reported);
  CHECK(i386.killed_by(SIGSYS));
}
#endif
