// The sandbox's init (pid 1 of the new pid namespace) and the async-signal-safe helpers both
// children share. Everything here runs between clone and exec: system calls only.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "child_plan.hpp"
#include "openshell/core/log.hpp"
#include "openshell/runtime/spawner.hpp"

namespace openshell::runtime::child {
namespace {

// The main process's pid for the signal handler; 0 until it exists.
volatile sig_atomic_t g_main_pid = 0;

// What the init passes on to the main process group; anything else sent to a pid-namespace init
// from outside takes its default action (SIGKILL always does: it ends the sandbox).
constexpr int kForwardedSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

void forward_signal(int signal_number) {
  const int saved = errno;
  const pid_t pid = g_main_pid;
  if (pid > 0) ::kill(-pid, signal_number);
  errno = saved;
}

// Rootless: the spawner writes uid_map/gid_map once we exist; until then we have no ids (and
// mounting would fail). EOF means the spawner failed and reported it itself.
void wait_for_id_maps(const Plan& plan) {
  if (plan.sync_fd < 0) return;
  char byte = 0;
  ssize_t got;
  do {
    got = ::read(plan.sync_fd, &byte, 1);
  } while (got < 0 && errno == EINTR);
  if (got != 1) ::_exit(kExitSetupFailed);
  ::close(plan.sync_fd);
}

// The new mount namespace: nothing we mount may propagate back to the host, /tmp is private,
// /run (host unix sockets: docker, X11, ssh-agent, our control socket) is masked, and /proc
// shows this pid namespace only.
void setup_mounts(const Plan& plan) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    fail(plan, "mount namespace: make / a slave mount", errno);
  }
  for (size_t i = 0; i < plan.private_count; ++i) {
    if (::mount("tmpfs", plan.private_dirs[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) {
      fail(plan, "mount namespace: private tmpfs on", errno, plan.private_dirs[i]);
    }
  }
  for (size_t i = 0; i < plan.masked_count; ++i) {
    if (::mount("tmpfs", plan.masked_dirs[i], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                "mode=755") != 0) {
      fail(plan, "mount namespace: mask", errno, plan.masked_dirs[i]);
    }
  }
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    fail(plan, "mount namespace: mount /proc", errno);
  }
}

// Brings `lo` up with an ioctl on any socket: no `ip` binary, no netlink library.
void bring_loopback_up(const Plan& plan) {
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) fail(plan, "network namespace: socket", errno);
  ifreq request{};
  std::memcpy(request.ifr_name, "lo", 3);
  if (::ioctl(sock, SIOCGIFFLAGS, &request) != 0) fail(plan, "network namespace: lo flags", errno);
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(sock, SIOCSIFFLAGS, &request) != 0) fail(plan, "network namespace: lo up", errno);
  ::close(sock);
}

// The proxy's listener, bound inside the sandbox's namespace and handed out over SCM_RIGHTS, so
// the only way out of the namespace is a connection the proxy accepts.
void hand_over_listener(const Plan& plan) {
  const int sock = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) fail(plan, "proxy listener: socket", errno);
  const int one = 1;
  ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(kSandboxProxyPort);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(sock, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    fail(plan, "proxy listener: bind 127.0.0.1:3128", errno);
  }
  if (::listen(sock, SOMAXCONN) != 0) fail(plan, "proxy listener: listen", errno);
  // With it, a socket diagnostics socket of this namespace: the identity lookup asks it which
  // socket a connection is (see SocketDiag). Optional: without it the lookup reads procfs.
  const int diag = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  const int fds[2] = {sock, diag};
  const size_t fd_count = diag >= 0 ? 2 : 1;

  char byte = 'L';
  iovec part{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = CMSG_SPACE(fd_count * sizeof(int));
  cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(fd_count * sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), fds, fd_count * sizeof(int));
  ssize_t sent;
  do {
    sent = ::sendmsg(plan.handover_fd, &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != 1) fail(plan, "proxy listener: hand over", errno);
  ::close(sock);
  if (diag >= 0) ::close(diag);
}

// After the main process exists the init needs no privilege but CAP_KILL (to signal a main
// process that runs as another uid): drop the rest, and confine it with the same seccomp filter.
// As root it also becomes non-dumpable (no ptrace, no core, root-owned /proc/1). Rootless it
// stays dumpable: its mm belongs to the host's user namespace (cloned, never exec'd), so a
// non-dumpable init would hide /proc/<init>/ns/net and exe from the unprivileged runtime, whose
// egress relay needs them. The main process still cannot reach it: seccomp denies ptrace,
// Landlock denies ptrace-mode access outside its domain, and the CAP_KILL kept in the init's
// permitted set makes the capability check refuse a caller without it.
void harden_init(const Plan& plan) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = 1u << CAP_KILL;
  if (::syscall(SYS_capset, &header, data) != 0) fail(plan, "init: capset", errno);
  if (!plan.user_namespace && ::prctl(PR_SET_DUMPABLE, 0UL, 0UL, 0UL, 0UL) != 0) {
    fail(plan, "init: PR_SET_DUMPABLE", errno);
  }
  if (const int err = apply_seccomp(*plan.seccomp); err != 0) fail(plan, "init: seccomp", err);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitSetupFailed;
}

}  // namespace

// Installs the bypass monitor's filter and lets the spawner take its listener with
// pidfd_getfd(2). Sending it with sendmsg would be trapped by the filter itself (nobody listens
// yet), and exempting the hand-over socket would leave a hole that every later process holding
// the same fd number inherits. So the init only writes the fd's number and waits for the
// spawner's one-byte answer before it may close it; write and read are never trapped.
void hand_over_bypass_listener(const Plan& plan) {
  const int listener = install_bypass_filter(*plan.bypass_filter);
  if (listener < 0) fail(plan, "bypass monitor: seccomp user notification", -listener);
  ssize_t done;
  do {
    done = ::write(plan.handover_fd, &listener, sizeof listener);
  } while (done < 0 && errno == EINTR);
  if (done != static_cast<ssize_t>(sizeof listener)) fail(plan, "bypass monitor: hand over", errno);
  char taken = 0;
  do {
    done = ::read(plan.handover_fd, &taken, 1);
  } while (done < 0 && errno == EINTR);
  if (done != 1) ::_exit(kExitSetupFailed);  // the spawner is gone, or reported it failed
  ::close(listener);
}

// Builds the ruleset from the paths as this mount namespace shows them (see SpawnerConfig).
// The init is a fork of the single-threaded spawner, so allocating here is safe. The caller
// already logged every best_effort degradation from its own view, so ours are not repeated;
// a hard_requirement failure is fatal and its message goes back whole.
LandlockRuleset prepare_ruleset(const Plan& plan) {
  if (plan.landlock_rules == nullptr) return {};
  core::Logger quiet(core::Level::kError);  // no sink: nothing is written anywhere
  auto prepared = prepare_landlock(*plan.landlock_rules, quiet);
  if (!prepared.ok()) fail(plan, prepared.error().message.c_str(), 0);
  return std::move(*prepared);
}

void report(int fd, uint32_t kind, const char* step, const char* detail, int err) noexcept {
  Report record;
  record.kind = kind;
  record.err = err;
  size_t used = 0;
  for (const char* part : {step, detail}) {
    if (part == nullptr) continue;
    if (used > 0 && used + 1 < sizeof record.step) record.step[used++] = ' ';
    for (; *part != '\0' && used + 1 < sizeof record.step; ++part)
      record.step[used++] = *part;
  }
  ssize_t written;
  do {
    written = ::write(fd, &record, sizeof record);
  } while (written < 0 && errno == EINTR);
}

void fail(const Plan& plan, const char* step, int err, const char* detail) noexcept {
  report(plan.report_fd, kReportFatal, step, detail, err);
  ::_exit(kExitSetupFailed);
}

int reset_signal_state() noexcept {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
    // SIGKILL, SIGSTOP and the C library's internal signals refuse with EINVAL: expected.
    if (::sigaction(signal_number, &action, nullptr) != 0 && errno != EINVAL) return errno;
  }
  sigset_t none;
  sigemptyset(&none);
  return ::sigprocmask(SIG_SETMASK, &none, nullptr) == 0 ? 0 : errno;
}

void run_init(const Plan& plan) noexcept {
  wait_for_id_maps(plan);
  if (const int err = reset_signal_state(); err != 0) fail(plan, "init: reset signals", err);
  // Our parent is the spawner, in another pid namespace (getppid() says 0): a hang-up on the
  // hand-over socket is how we notice it died before the death signal was armed.
  if (::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL), 0UL, 0UL, 0UL) != 0) {
    fail(plan, "init: PR_SET_PDEATHSIG", errno);
  }
  pollfd lifeline{plan.handover_fd, 0, 0};
  if (::poll(&lifeline, 1, 0) > 0 && (lifeline.revents & (POLLHUP | POLLERR)) != 0) {
    ::_exit(kExitSetupFailed);
  }

  setup_mounts(plan);
  if (plan.new_network) bring_loopback_up(plan);
  if (plan.proxy_listener) hand_over_listener(plan);
  if (plan.bypass_filter != nullptr) hand_over_bypass_listener(plan);
  const LandlockRuleset landlock = prepare_ruleset(plan);

  // Block what we forward until the handler knows whom to forward it to.
  sigset_t forwarded;
  sigemptyset(&forwarded);
  for (const int signal_number : kForwardedSignals)
    sigaddset(&forwarded, signal_number);
  ::sigprocmask(SIG_BLOCK, &forwarded, nullptr);

  const long main_pid =
      ::syscall(SYS_clone, static_cast<unsigned long>(SIGCHLD), nullptr, nullptr, nullptr, nullptr);
  if (main_pid < 0) fail(plan, "init: fork the main process", errno);
  if (main_pid == 0) run_main(plan, landlock);

  g_main_pid = static_cast<pid_t>(main_pid);
  struct sigaction action {};
  action.sa_handler = forward_signal;
  action.sa_flags = SA_RESTART;
  sigfillset(&action.sa_mask);
  for (const int signal_number : kForwardedSignals)
    ::sigaction(signal_number, &action, nullptr);
  ::sigprocmask(SIG_UNBLOCK, &forwarded, nullptr);

  harden_init(plan);
  // The report pipe, the stdio the main process got, the hand-over socket, the Landlock ruleset:
  // the init keeps none of them, so the spawner sees EOF once the main process has exec'd and a
  // PTY master sees the hang-up once the main process is gone.
  if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
    for (int fd = 3; fd < 4096; ++fd)
      ::close(fd);
  }

  // Reap everything (orphans are ours: we are pid 1); leave with the main process. Our exit
  // makes the kernel SIGKILL whatever else still runs in the namespace.
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(-1, &status, 0);
    if (reaped == static_cast<pid_t>(main_pid)) ::_exit(exit_code_of(status));
    if (reaped < 0 && errno != EINTR) ::_exit(kExitSetupFailed);
  }
}

}  // namespace openshell::runtime::child
