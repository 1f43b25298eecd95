// Seccomp (runtime-spec §3): compiles the child's deny-list filter with libseccomp in the parent
// and installs the finished BPF program in the child, between fork and exec.
#include "openshell/runtime/seccomp.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace openshell::runtime {
namespace {

const uint32_t kDeny = SCMP_ACT_ERRNO(EPERM);
// glibc falls back to clone(2), whose flags a filter can read, only on ENOSYS; on EPERM thread
// and process creation would fail outright (spec §3.2).
const uint32_t kNoClone3 = SCMP_ACT_ERRNO(ENOSYS);

// Denied whatever the arguments: spec §3.2's unconditional list, plus the module and kexec calls
// of the supervisor prelude (§3.3). We install no prelude on the supervisor, so the child's own
// filter carries them to end up with the same effective set as the Rust child.
constexpr const char* kDeniedSyscalls[] = {
    "bpf",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_setup",
    "kexec_file_load",
    "kexec_load",
    "memfd_create",
    "mount",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "setns",
    "umount2",
    "userfaultfd",
};

// Families no sandboxed workload needs; each is a kernel attack surface (spec §3.2).
constexpr int kDeniedFamilies[] = {AF_PACKET, AF_BLUETOOTH, AF_VSOCK};

// socket(2)'s type argument carries SOCK_NONBLOCK/SOCK_CLOEXEC above the type proper; the
// kernel's SOCK_TYPE_MASK is not exported to user space.
constexpr uint64_t kSockTypeMask = 0xf;

// int arguments are compared on their low 32 bits only, as the kernel reads them: libseccomp's
// plain EQ also wants the upper half to be zero, so socket(0x1'0000'0011, ...), which the kernel
// takes for AF_PACKET, would slip past it. A masked compare leaves the upper half out.
scmp_arg_cmp arg_is(unsigned arg, uint32_t value) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, 0xffffffffU, value};
}

scmp_arg_cmp arg_has_bits(unsigned arg, uint64_t bits) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, bits, bits};
}

Error seccomp_error(const std::string& what, int rc) {
  // libseccomp returns negated errno values.
  return Error::from_errno("seccomp: " + what, -rc);
}

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Adds rules until the first failure, which it keeps; so the rule list reads as a list.
class RuleAdder {
 public:
  explicit RuleAdder(scmp_filter_ctx ctx) : ctx_(ctx) {}

  void add(const char* syscall, uint32_t action, std::initializer_list<scmp_arg_cmp> args = {}) {
    if (error_) return;
    const int nr = seccomp_syscall_resolve_name(syscall);
    if (nr == __NR_SCMP_ERROR) {
      error_ = make_error(Errc::kInternal,
                          std::string("seccomp: libseccomp does not know syscall ") + syscall);
      return;
    }
    const int rc = seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()),
                                          std::data(args));
    if (rc < 0) error_ = seccomp_error(std::string("rule for ") + syscall, rc);
  }

  std::optional<Error> take_error() { return std::move(error_); }

 private:
  scmp_filter_ctx ctx_;
  std::optional<Error> error_;
};

void add_rules(RuleAdder& rules, const SeccompOptions& options) {
  rules.add("clone3", kNoClone3);
  for (const char* syscall : kDeniedSyscalls) {
    rules.add(syscall, kDeny);
  }

  for (int family : kDeniedFamilies) {
    rules.add("socket", kDeny, {arg_is(0, family)});
  }
  if (!options.allow_inet) {
    rules.add("socket", kDeny, {arg_is(0, AF_INET)});
    rules.add("socket", kDeny, {arg_is(0, AF_INET6)});
  }
  // Raw IP sockets: the kernel refuses them without CAP_NET_RAW, but a child that is root in its
  // own user namespace holds it there; the spec leaves them to the kernel, we deny them outright.
  for (int family : {AF_INET, AF_INET6}) {
    rules.add("socket", kDeny,
              {arg_is(0, family), scmp_arg_cmp{1, SCMP_CMP_MASKED_EQ, kSockTypeMask, SOCK_RAW}});
  }
  // Netlink only for NETLINK_ROUTE (getifaddrs, spec §9 #7). This NE compares all 64 bits, so
  // stray upper bits deny a call the kernel would read as ROUTE: wrong in the safe direction.
  rules.add("socket", kDeny,
            {arg_is(0, AF_NETLINK), scmp_arg_cmp{2, SCMP_CMP_NE, NETLINK_ROUTE, 0}});

  // No new user namespaces (clone's flags are arg0 on x86_64 and aarch64 alike).
  rules.add("unshare", kDeny, {arg_has_bits(0, CLONE_NEWUSER)});
  rules.add("clone", kDeny, {arg_has_bits(0, CLONE_NEWUSER)});
  // Fileless exec (execveat on a memfd or O_PATH fd); execve and path-based execveat still work.
  rules.add("execveat", kDeny, {arg_has_bits(4, AT_EMPTY_PATH)});
  // No filter of the workload's own (nested sandboxes); filters only stack, this one stays.
  rules.add("seccomp", kDeny, {arg_is(0, SECCOMP_SET_MODE_FILTER)});
}

// libseccomp 2.5 exports only to an fd (seccomp_export_bpf_mem arrived in 2.6). A pipe rather
// than a memfd, so building still works inside a sandbox that denies memfd_create. The program is
// one write(2): a kernel-acceptable one (BPF_MAXINSNS, 32 KiB) fits a default 64 KiB pipe; the
// pipe is nonblocking so a smaller one gives a short write, which libseccomp does not report but
// shows here as a full pipe, instead of a hang.
Result<SeccompProgram> export_program(scmp_filter_ctx ctx) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return Error::from_errno("seccomp: pipe2");
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);
  const int capacity = ::fcntl(write_end.get(), F_GETPIPE_SZ);
  if (capacity <= 0) return Error::from_errno("seccomp: fcntl(F_GETPIPE_SZ)");

  if (const int rc = seccomp_export_bpf(ctx, write_end.get()); rc < 0) {
    return seccomp_error("seccomp_export_bpf", rc);
  }
  write_end.reset();  // the reader sees end-of-file after the program

  SeccompProgram program;
  program.instructions.resize(static_cast<size_t>(capacity) / sizeof(sock_filter));
  auto* bytes = reinterpret_cast<char*>(program.instructions.data());
  const size_t room = program.instructions.size() * sizeof(sock_filter);
  size_t total = 0;
  while (total < room) {
    const ssize_t n = ::read(read_end.get(), bytes + total, room - total);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("seccomp: read(exported program)");
    }
    total += static_cast<size_t>(n);
  }
  if (total == 0 || total % sizeof(sock_filter) != 0 || total >= room) {
    return make_error(Errc::kInternal, "seccomp: exported program has an unexpected size (" +
                                           std::to_string(total) + " bytes)");
  }
  program.instructions.resize(total / sizeof(sock_filter));
  if (program.instructions.size() > BPF_MAXINSNS) {
    return make_error(Errc::kLimit,
                      "seccomp: program has " + std::to_string(program.instructions.size()) +
                          " instructions, the kernel accepts " + std::to_string(BPF_MAXINSNS));
  }
  return program;
}

}  // namespace

Result<SeccompProgram> build_seccomp(const SeccompOptions& options) {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return make_error(Errc::kInternal, "seccomp: seccomp_init failed");

  // Only the native architecture is in the filter, so every other ABI takes the bad-arch action
  // and dies (spec §3.1): i386 `int 0x80` calls (AUDIT_ARCH_I386) and, on x86_64, x32 calls.
  // Those carry AUDIT_ARCH_X86_64 too, but with __X32_SYSCALL_BIT (0x40000000) in the number;
  // libseccomp sends numbers at or above that bit to the bad-arch action when x32 is not in the
  // filter, which closes the gap spec §3.1 notes in the Rust filter. Tests check both ABIs.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
      rc < 0) {
    return seccomp_error("bad-arch action", rc);
  }

  RuleAdder rules(ctx.get());
  add_rules(rules, options);
  if (auto error = rules.take_error()) return std::move(*error);
  return export_program(ctx.get());
}

Result<SeccompProgram> build_bypass_filter() {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return make_error(Errc::kInternal, "bypass monitor: seccomp_init failed");
  // Foreign ABIs are the deny filter's business (it kills them); this one only watches.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ALLOW); rc < 0) {
    return seccomp_error("bypass monitor: bad-arch action", rc);
  }
  RuleAdder rules(ctx.get());
  // A filter cannot read the address behind a pointer, so every connect and every message with
  // room for an address is shown to the monitor, which reads it and lets the call go on. A send
  // without an address (send(2), write(2)) is the common case and never stops.
  rules.add("connect", SCMP_ACT_NOTIFY);
  rules.add("sendto", SCMP_ACT_NOTIFY, {scmp_arg_cmp{4, SCMP_CMP_NE, 0, 0}});
  rules.add("sendmsg", SCMP_ACT_NOTIFY);
  rules.add("sendmmsg", SCMP_ACT_NOTIFY);
  if (auto error = rules.take_error()) {
    error->message = "bypass monitor: " + error->message;
    return std::move(*error);
  }
  return export_program(ctx.get());
}

int install_bypass_filter(const SeccompProgram& program) noexcept {
  const auto& instructions = program.instructions;
  if (instructions.empty() || instructions.size() > BPF_MAXINSNS) return -EINVAL;
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(instructions.size());
  fprog.filter = const_cast<sock_filter*>(instructions.data());  // the kernel only reads it
  const long fd =
      ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
  return fd < 0 ? -errno : static_cast<int>(fd);
}

int apply_seccomp(const SeccompProgram& program) noexcept {
  const auto& instructions = program.instructions;
  if (instructions.empty() || instructions.size() > BPF_MAXINSNS) return EINVAL;
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(instructions.size());
  fprog.filter = const_cast<sock_filter*>(instructions.data());  // the kernel only reads it

  // Without CAP_SYS_ADMIN the kernel installs a filter only under no_new_privs. Arguments are
  // unsigned long because prctl is variadic and the kernel checks the unused ones are zero.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) != 0) return errno;
  if (::prctl(PR_SET_SECCOMP, static_cast<unsigned long>(SECCOMP_MODE_FILTER), &fprog, 0UL, 0UL) !=
      0) {
    return errno;
  }
  return 0;
}

}  // namespace openshell::runtime
