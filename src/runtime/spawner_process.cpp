// The spawner process: single-threaded, forked before any thread exists. For each request it
// prepares the child plan, clones the sandbox's init into new namespaces, writes the rootless id
// maps, collects the in-namespace listener and the children's reports, and answers; then it
// reaps inits and sends their exit notices.
#include "spawner_process.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "child_plan.hpp"
#include "spawn_protocol.hpp"

namespace openshell::runtime::spawner {
namespace {

// How long a sandbox may take from clone to exec. Mounting and exec are milliseconds; the bound
// only keeps a wedged child from wedging the spawner (and every later request) with it.
constexpr std::chrono::milliseconds kSetupTimeout{30'000};

// Signals the spawner must survive: it shares the caller's process group, so a terminal's ^C
// or ^\ reaches it too, and the caller decides what a SIGTERM/SIGHUP means for its sandboxes.
constexpr int kIgnoredSignals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM,
                                   SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE};

struct Running {
  pid_t pid = -1;
  UniqueFd lifeline;   // our end of the hand-over socket; the init watches it while it starts
  bool notify = true;  // false: its spawn failed, the caller waits for no exit notice
};

// Owns every string and array a child plan points into, for as long as the clone takes.
struct PlanStorage {
  SandboxSpec spec;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<gid_t> groups;
  std::vector<const char*> private_dirs;
  std::vector<const char*> masked_dirs;
};

bool has_nul(const std::string& text) {
  return text.find('\0') != std::string::npos;
}

std::optional<std::string> validate(const SandboxSpec& spec) {
  if (spec.argv.empty()) return "empty command";
  if (spec.program.empty() || spec.program.front() != '/') return "program path is not absolute";
  if (has_nul(spec.program) || has_nul(spec.workdir)) return "NUL byte in a path";
  for (const auto* list : {&spec.argv, &spec.env, &spec.private_dirs, &spec.masked_dirs}) {
    for (const std::string& text : *list) {
      if (has_nul(text)) return "NUL byte in the command, environment or a mount path";
    }
  }
  for (const std::string& entry : spec.env) {
    if (entry.find('=') == std::string::npos) return "environment entry without '='";
  }
  if (spec.user_namespace && (spec.uid != ::getuid() || spec.gid != ::getgid())) {
    return "a rootless sandbox runs as the caller's uid and gid";
  }
  return std::nullopt;
}

child::Plan make_plan(PlanStorage& storage) {
  SandboxSpec& spec = storage.spec;
  for (std::string& arg : spec.argv)
    storage.argv.push_back(arg.data());
  storage.argv.push_back(nullptr);
  for (std::string& entry : spec.env)
    storage.envp.push_back(entry.data());
  storage.envp.push_back(nullptr);
  storage.groups.assign(spec.groups.begin(), spec.groups.end());
  for (const std::string& dir : spec.private_dirs)
    storage.private_dirs.push_back(dir.c_str());
  for (const std::string& dir : spec.masked_dirs)
    storage.masked_dirs.push_back(dir.c_str());

  child::Plan plan;
  plan.program = spec.program.c_str();
  plan.argv = storage.argv.data();
  plan.envp = storage.envp.data();
  plan.workdir = spec.workdir.empty() ? nullptr : spec.workdir.c_str();
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.groups = storage.groups.data();
  plan.group_count = storage.groups.size();
  plan.user_namespace = spec.user_namespace;
  plan.tty = spec.tty;
  plan.new_network = spec.network != SandboxNetwork::kHost;
  plan.proxy_listener = spec.network == SandboxNetwork::kProxy;
  plan.private_dirs = storage.private_dirs.data();
  plan.private_count = storage.private_dirs.size();
  plan.masked_dirs = storage.masked_dirs.data();
  plan.masked_count = storage.masked_dirs.size();
  return plan;
}

Result<void> write_file(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno("open " + path);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return Error::from_errno("write " + path);
  }
  return {};
}

// Rootless: map our own uid and gid onto themselves, one id each. Without CAP_SETGID the kernel
// wants setgroups denied first (so a dropped group cannot be regained by setgroups).
Result<void> write_id_maps(pid_t pid, uid_t uid, gid_t gid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  if (auto r = write_file(proc + "/setgroups", "deny"); !r.ok()) return r;
  if (auto r = write_file(proc + "/uid_map", fmt::format("{} {} 1\n", uid, uid)); !r.ok()) return r;
  return write_file(proc + "/gid_map", fmt::format("{} {} 1\n", gid, gid));
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// The listener the init sends back, and the socket diagnostics socket that may come with it;
// an invalid listener when the init failed first (its report says why).
struct Received {
  UniqueFd listener;
  UniqueFd socket_diag;
};
Received receive_listener(int handover, std::chrono::steady_clock::time_point deadline) {
  pollfd ready{handover, POLLIN, 0};
  if (::poll(&ready, 1, remaining_ms(deadline)) <= 0) return {};
  char byte = 0;
  iovec part{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (::recvmsg(handover, &message, MSG_CMSG_CLOEXEC) <= 0) return {};
  const cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
  if (cmsg == nullptr || cmsg->cmsg_type != SCM_RIGHTS || cmsg->cmsg_len < CMSG_LEN(sizeof(int))) {
    return {};
  }
  int fds[2] = {-1, -1};
  const size_t count = std::min<size_t>(2, (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
  std::memcpy(fds, CMSG_DATA(cmsg), count * sizeof(int));
  return {UniqueFd(fds[0]), UniqueFd(count > 1 ? fds[1] : -1)};
}

// The bypass monitor's listener: the init writes its fd number, we copy the fd out of the init
// with pidfd_getfd and answer one byte, after which the init closes its own copy. An invalid fd
// when the init failed first (its report says why); an error when the copy failed.
Result<UniqueFd> take_bypass_listener(int handover, int pidfd,
                                      std::chrono::steady_clock::time_point deadline) {
  pollfd ready{handover, POLLIN, 0};
  if (::poll(&ready, 1, remaining_ms(deadline)) <= 0) return UniqueFd();
  int number = -1;
  if (::read(handover, &number, sizeof number) != static_cast<ssize_t>(sizeof number)) {
    return UniqueFd();
  }
  UniqueFd listener(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, number, 0U)));
  if (!listener) return Error::from_errno("bypass monitor: pidfd_getfd");
  if (::write(handover, "k", 1) != 1) return Error::from_errno("bypass monitor: hand over");
  return listener;
}

std::string describe(const child::Report& report) {
  std::string step(report.step, ::strnlen(report.step, sizeof report.step));
  return report.err == 0 ? step : step + ": " + std::strerror(report.err);
}

// Reads the children's reports until EOF (both closed the pipe: the program is exec'd).
struct Reports {
  std::optional<child::Report> fatal;
  std::vector<std::string> warnings;
  bool timed_out = false;
  pid_t session_pid = -1;  // a session's joiner announced the session process
};
Reports read_reports(int pipe_fd, std::chrono::steady_clock::time_point deadline) {
  Reports reports;
  for (;;) {
    pollfd ready{pipe_fd, POLLIN, 0};
    const int polled = ::poll(&ready, 1, remaining_ms(deadline));
    if (polled < 0 && errno == EINTR) continue;
    if (polled <= 0) {
      reports.timed_out = true;
      return reports;
    }
    child::Report record;
    const ssize_t got = ::read(pipe_fd, &record, sizeof record);
    if (got < 0 && errno == EINTR) continue;
    if (got != static_cast<ssize_t>(sizeof record)) return reports;  // EOF
    if (record.kind == child::kReportSessionPid) {
      reports.session_pid = static_cast<pid_t>(record.err);
    } else if (record.kind == child::kReportWarning) {
      reports.warnings.push_back(describe(record) + "; continuing without it (best_effort)");
    } else if (!reports.fatal) {
      reports.fatal = record;
    }
  }
}

// The namespaces a session must join, asked of the kernel rather than taken from the request:
// joining the caller's own network or user namespace is not a no-op for a rootless spawner (it
// lacks the capability), and a wrong request must not leave a session outside the sandbox.
Result<int> session_join_flags(int init_pidfd) {
  const std::string fdinfo = "/proc/self/fdinfo/" + std::to_string(init_pidfd);
  UniqueFd info(::open(fdinfo.c_str(), O_RDONLY | O_CLOEXEC));
  if (!info) return Error::from_errno("session: open " + fdinfo);
  char text[1024] = {};
  if (::read(info.get(), text, sizeof text - 1) <= 0) return Error::from_errno("session: read");
  const char* pid_line = std::strstr(text, "\nPid:");
  const long pid = pid_line != nullptr ? std::strtol(pid_line + 5, nullptr, 10) : -1;
  if (pid <= 0) return make_error(Errc::kUnavailable, "session: the sandbox has ended");
  int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;
  for (const auto& [name, flag] :
       {std::pair{"net", CLONE_NEWNET}, std::pair{"user", CLONE_NEWUSER}}) {
    struct stat theirs {};
    struct stat ours {};
    const std::string path = "/proc/" + std::to_string(pid) + "/ns/" + name;
    if (::stat(path.c_str(), &theirs) != 0) return Error::from_errno("session: stat " + path);
    if (::stat((std::string("/proc/self/ns/") + name).c_str(), &ours) != 0) {
      return Error::from_errno("session: stat /proc/self/ns");
    }
    if (theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev) flags |= flag;
  }
  return flags;
}

int failure_exit_code(const child::Report& report) {
  if (std::strncmp(report.step, "execve", 6) != 0) return kExitSetupFailed;
  return report.err == ENOENT ? kExitNotFound : kExitCannotExecute;
}

// The connect helper (Loop::handle_connect), in the spawner's fork: joins the namespaces,
// connects, sends {errno, socket} on `answer` and exits. System calls only.
[[noreturn]] void connect_and_send(int init_pidfd, int join_flags, const sockaddr_storage& address,
                                   size_t length, int answer) {
  int err = 0;
  int sock = -1;
  if (join_flags != 0 && ::setns(init_pidfd, join_flags) != 0) {
    err = errno;
  } else if ((sock = ::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
    err = errno;
  } else if (::connect(sock, reinterpret_cast<const sockaddr*>(&address),
                       static_cast<socklen_t>(length)) != 0) {
    // Loopback answers at once (accepted or refused): a blocking connect is bounded.
    err = errno;
  }
  iovec data{&err, sizeof err};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  if (err == 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &sock, sizeof sock);
  }
  const ssize_t sent = ::sendmsg(answer, &message, MSG_NOSIGNAL);
  ::_exit(sent == static_cast<ssize_t>(sizeof err) ? 0 : 1);
}

// The helper's answer: its errno (0: connected) and the socket. EPIPE when it died first.
std::pair<int, UniqueFd> receive_errno_and_fd(int answer) {
  int err = EPIPE;
  iovec data{&err, sizeof err};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (::recvmsg(answer, &message, MSG_CMSG_CLOEXEC) != static_cast<ssize_t>(sizeof err)) {
    return {EPIPE, UniqueFd()};
  }
  UniqueFd socket;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&message); cmsg != nullptr;
       cmsg = CMSG_NXTHDR(&message, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
      socket.reset(fd);
    }
  }
  if (err == 0 && !socket) err = EPROTO;
  return {err, err == 0 ? std::move(socket) : UniqueFd()};
}

class Loop {
 public:
  Loop(int channel, const SpawnerConfig& config) : channel_(channel), config_(config) {}

  [[noreturn]] void serve(int child_signals) {
    for (;;) {
      pollfd fds[2] = {{channel_, POLLIN, 0}, {child_signals, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        shutdown();
      }
      if ((fds[1].revents & POLLIN) != 0) {
        signalfd_siginfo info;
        while (::read(child_signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        }
        reap();
      }
      if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        auto message = protocol::receive_message(channel_);
        if (!message.ok() || !message->has_value()) shutdown();
        if ((*message)->type == protocol::Type::kSpawn) handle_spawn(**message);
        if ((*message)->type == protocol::Type::kSpawnSession) handle_session(**message);
        if ((*message)->type == protocol::Type::kConnect) handle_connect(**message);
      }
    }
  }

 private:
  void reply_failure(const SpawnFailure& failure) {
    (void)protocol::send_message(channel_, protocol::Type::kSpawnFailed,
                                 protocol::encode_failure(failure));
  }

  // The plan a request describes (its spec, stdio fds, our security layers) built in `storage`;
  // nullopt after replying why not. `fd_count`: stdio plus what the request type adds.
  std::optional<child::Plan> plan_for(protocol::Message& request, size_t fd_count,
                                      const char* malformed, PlanStorage& storage) {
    auto spec = protocol::decode_spec(request.payload);
    if (!spec || request.fds.size() != fd_count) {
      reply_failure({kExitSetupFailed, malformed, {}});
      return std::nullopt;
    }
    storage.spec = std::move(*spec);
    if (auto problem = validate(storage.spec)) {
      reply_failure({kExitSetupFailed, *problem, {}});
      return std::nullopt;
    }
    child::Plan plan = make_plan(storage);
    for (int i = 0; i < 3; ++i)
      plan.stdio[i] = request.fds[i].get();
    plan.landlock_rules = config_.landlock ? &*config_.landlock : nullptr;
    plan.seccomp = &config_.seccomp;
    return plan;
  }

  void handle_spawn(protocol::Message& request) {
    PlanStorage storage;
    std::optional<child::Plan> planned = plan_for(request, 3, "malformed spawn request", storage);
    if (!planned) return;
    child::Plan& plan = *planned;
    // No namespace of its own, no proxy to bypass: a host-network sandbox is not watched.
    if (config_.bypass_filter && storage.spec.network != SandboxNetwork::kHost) {
      plan.bypass_filter = &*config_.bypass_filter;
    }

    int report_pipe[2];
    if (::pipe2(report_pipe, O_CLOEXEC) != 0) {
      return reply_failure({kExitSetupFailed, Error::from_errno("pipe2").message, {}});
    }
    UniqueFd report_read(report_pipe[0]);
    UniqueFd report_write(report_pipe[1]);
    UniqueFd sync_read;
    UniqueFd sync_write;
    if (storage.spec.user_namespace) {
      int sync_pipe[2];
      if (::pipe2(sync_pipe, O_CLOEXEC) != 0) {
        return reply_failure({kExitSetupFailed, Error::from_errno("pipe2").message, {}});
      }
      sync_read.reset(sync_pipe[0]);
      sync_write.reset(sync_pipe[1]);
    }
    int handover[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, handover) != 0) {
      return reply_failure({kExitSetupFailed, Error::from_errno("socketpair").message, {}});
    }
    UniqueFd handover_ours(handover[0]);
    UniqueFd handover_theirs(handover[1]);
    plan.report_fd = report_write.get();
    plan.sync_fd = sync_read.get();
    plan.handover_fd = handover_theirs.get();

    unsigned long flags = SIGCHLD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (plan.new_network) flags |= CLONE_NEWNET;
    if (storage.spec.user_namespace) flags |= CLONE_NEWUSER;
    // A raw clone without a new stack behaves like fork with namespace flags: the child runs on
    // its copy of our stack and never returns from run_init.
    const long cloned = ::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr);
    if (cloned < 0) {
      return reply_failure(
          {kExitSetupFailed,
           Error::from_errno("namespaces: clone").message +
               (errno == EPERM || errno == ENOSPC ? " (are user namespaces disabled or exhausted?)"
                                                  : ""),
           {}});
    }
    if (cloned == 0) {
      // Close the ends that are not ours, so EOF on them means what it should.
      ::close(report_read.release());
      if (sync_write) ::close(sync_write.release());
      ::close(handover_ours.release());
      child::run_init(plan);
    }
    const pid_t pid = static_cast<pid_t>(cloned);
    report_write.reset();
    sync_read.reset();
    handover_theirs.reset();
    running_.push_back({pid, UniqueFd(), false});  // reaped quietly unless we succeed

    const auto deadline = std::chrono::steady_clock::now() + kSetupTimeout;
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)));
    if (!pidfd) return abandon(pid, Error::from_errno("pidfd_open").message);
    if (storage.spec.user_namespace) {
      auto mapped = write_id_maps(pid, plan.uid, plan.gid);
      if (!mapped.ok()) return abandon(pid, "user namespace: " + mapped.error().message);
      if (::write(sync_write.get(), "m", 1) != 1) {
        return abandon(pid, Error::from_errno("user namespace: sync").message);
      }
      sync_write.reset();
    }
    UniqueFd listener;
    UniqueFd socket_diag;
    if (plan.proxy_listener) {
      Received received = receive_listener(handover_ours.get(), deadline);
      listener = std::move(received.listener);
      socket_diag = std::move(received.socket_diag);
    }
    UniqueFd bypass;
    if (plan.bypass_filter != nullptr && (listener || !plan.proxy_listener)) {
      auto taken = take_bypass_listener(handover_ours.get(), pidfd.get(), deadline);
      if (!taken.ok()) return abandon(pid, taken.error().message);
      bypass = std::move(*taken);
    }
    Reports reports = read_reports(report_read.get(), deadline);
    if (reports.timed_out) {
      return abandon(pid, "sandbox setup did not finish within " +
                              std::to_string(kSetupTimeout.count() / 1000) + " s");
    }
    if (reports.fatal) {
      ::kill(pid, SIGKILL);
      return reply_failure(
          {failure_exit_code(*reports.fatal), describe(*reports.fatal), reports.warnings});
    }
    if (plan.proxy_listener && !listener) {
      return abandon(pid, "proxy listener: not received from the sandbox");
    }
    if (plan.bypass_filter != nullptr && !bypass) {
      return abandon(pid, "bypass monitor: listener not received from the sandbox");
    }
    running_.back().lifeline = std::move(handover_ours);
    running_.back().notify = true;
    std::vector<int> fds{pidfd.get()};
    if (listener) fds.push_back(listener.get());
    if (bypass) fds.push_back(bypass.get());
    if (socket_diag) fds.push_back(socket_diag.get());
    const protocol::Spawned spawned{pid, reports.warnings, static_cast<bool>(listener),
                                    static_cast<bool>(bypass), static_cast<bool>(socket_diag)};
    (void)protocol::send_message(channel_, protocol::Type::kSpawned,
                                 protocol::encode_spawned(spawned), fds);
  }

  // A session in a running sandbox (see child_session.cpp): the same plan as a main process,
  // joined to the init's namespaces instead of new ones.
  void handle_session(protocol::Message& request) {
    PlanStorage storage;
    // The sandbox is named by its init's pidfd, so any spawner may join it (the SSH server
    // has one of its own: see ssh_server.hpp); a dead init makes setns fail with ESRCH.
    std::optional<child::Plan> planned = plan_for(request, 4, "malformed session request", storage);
    if (!planned) return;
    child::Plan& plan = *planned;
    plan.session = true;
    UniqueFd init_pidfd = std::move(request.fds[3]);
    plan.join_pidfd = init_pidfd.get();
    auto join_flags = session_join_flags(init_pidfd.get());
    if (!join_flags.ok()) return reply_failure({kExitSetupFailed, join_flags.error().message, {}});
    plan.join_flags = *join_flags;
    if (((plan.join_flags & CLONE_NEWUSER) != 0) != storage.spec.user_namespace) {
      return reply_failure(
          {kExitSetupFailed, "session: user_namespace differs from the sandbox's", {}});
    }

    // Watched like the main process when the sandbox has a network namespace of its own.
    if (config_.bypass_filter && (plan.join_flags & CLONE_NEWNET) != 0) {
      plan.bypass_filter = &*config_.bypass_filter;
    }

    int report_pipe[2];
    if (::pipe2(report_pipe, O_CLOEXEC) != 0) {
      return reply_failure({kExitSetupFailed, Error::from_errno("pipe2").message, {}});
    }
    UniqueFd report_read(report_pipe[0]);
    UniqueFd report_write(report_pipe[1]);
    plan.report_fd = report_write.get();
    UniqueFd handover_ours;
    UniqueFd handover_theirs;
    if (plan.bypass_filter != nullptr) {
      int handover[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, handover) != 0) {
        return reply_failure({kExitSetupFailed, Error::from_errno("socketpair").message, {}});
      }
      handover_ours.reset(handover[0]);
      handover_theirs.reset(handover[1]);
      plan.handover_fd = handover_theirs.get();
    }
    // The joiner: reaped quietly by reap() (it is not in running_); it exits right after it
    // cloned the session process.
    const long joiner = ::syscall(SYS_clone, static_cast<unsigned long>(SIGCHLD), nullptr, nullptr,
                                  nullptr, nullptr);
    if (joiner < 0) {
      return reply_failure({kExitSetupFailed, Error::from_errno("session: fork").message, {}});
    }
    if (joiner == 0) {
      ::close(report_read.release());
      if (handover_ours) ::close(handover_ours.release());
      child::run_session(plan);
    }
    report_write.reset();
    handover_theirs.reset();
    init_pidfd.reset();
    const auto deadline = std::chrono::steady_clock::now() + kSetupTimeout;
    UniqueFd bypass;
    if (plan.bypass_filter != nullptr) {
      // The joiner installed the filter its session inherits; the listener is taken from it.
      UniqueFd joiner_pidfd(static_cast<int>(::syscall(SYS_pidfd_open, joiner, 0U)));
      auto taken = joiner_pidfd
                       ? take_bypass_listener(handover_ours.get(), joiner_pidfd.get(), deadline)
                       : Result<UniqueFd>(Error::from_errno("session: pidfd_open"));
      if (!taken.ok()) {
        ::kill(static_cast<pid_t>(joiner), SIGKILL);  // it waits for our answer, before cloning
        return reply_failure({kExitSetupFailed, taken.error().message, {}});
      }
      // Invalid when the joiner failed first: its report says why.
      bypass = std::move(*taken);
    }
    Reports reports = read_reports(report_read.get(), deadline);
    const pid_t pid = reports.session_pid;
    if (pid > 0) running_.push_back({pid, UniqueFd(), false});  // quiet unless it starts
    if (reports.timed_out) {
      ::kill(static_cast<pid_t>(joiner), SIGKILL);
      if (pid > 0) ::kill(pid, SIGKILL);
      return reply_failure({kExitSetupFailed,
                            "session setup did not finish within " +
                                std::to_string(kSetupTimeout.count() / 1000) + " s",
                            {}});
    }
    if (reports.fatal) {
      if (pid > 0) ::kill(pid, SIGKILL);
      return reply_failure(
          {failure_exit_code(*reports.fatal), describe(*reports.fatal), reports.warnings});
    }
    if (pid <= 0) return reply_failure({kExitSetupFailed, "session: no process", {}});
    if (plan.bypass_filter != nullptr && !bypass) {
      return abandon(pid, "bypass monitor: listener not received from the session");
    }
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)));
    if (!pidfd) return abandon(pid, Error::from_errno("session: pidfd_open").message);
    running_.back().notify = true;
    std::vector<int> fds{pidfd.get()};
    if (bypass) fds.push_back(bypass.get());
    (void)protocol::send_message(
        channel_, protocol::Type::kSpawned,
        protocol::encode_spawned({pid, reports.warnings, false, static_cast<bool>(bypass), false}),
        fds);
  }

  // A TCP connect inside a running sandbox (Spawner::connect_in_sandbox): a helper joins the
  // init's user namespace (when it has its own, which gives it the capability to join the rest)
  // and network namespace, connects, and sends the socket back with the connect's errno.
  void handle_connect(protocol::Message& request) {
    sockaddr_storage address{};
    const std::string& raw = request.payload;
    if (request.fds.size() != 1 || raw.size() > sizeof address) {
      return reply_failure({kExitSetupFailed, "malformed connect request", {}});
    }
    std::memcpy(&address, raw.data(), raw.size());
    const bool sized = (address.ss_family == AF_INET && raw.size() == sizeof(sockaddr_in)) ||
                       (address.ss_family == AF_INET6 && raw.size() == sizeof(sockaddr_in6));
    if (!sized) return reply_failure({kExitSetupFailed, "malformed connect request", {}});
    auto join_flags = session_join_flags(request.fds[0].get());
    if (!join_flags.ok()) return reply_failure({kExitSetupFailed, join_flags.error().message, {}});
    const int flags = *join_flags & (CLONE_NEWUSER | CLONE_NEWNET);

    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
      return reply_failure({kExitSetupFailed, Error::from_errno("socketpair").message, {}});
    }
    UniqueFd ours(pair[0]);
    UniqueFd theirs(pair[1]);
    const long helper = ::syscall(SYS_clone, static_cast<unsigned long>(SIGCHLD), nullptr, nullptr,
                                  nullptr, nullptr);
    if (helper < 0) {
      return reply_failure({kExitSetupFailed, Error::from_errno("connect: fork").message, {}});
    }
    if (helper == 0)
      connect_and_send(request.fds[0].get(), flags, address, raw.size(), theirs.get());
    theirs.reset();
    // The helper is reaped by reap() like a session's joiner; it exits once it has sent.
    pollfd ready{ours.get(), POLLIN, 0};
    const int timeout_ms = static_cast<int>(kSetupTimeout.count());
    int err = ETIMEDOUT;
    UniqueFd socket;
    if (::poll(&ready, 1, timeout_ms) == 1) {
      auto answer = receive_errno_and_fd(ours.get());
      err = answer.first;
      socket = std::move(answer.second);
    } else {
      ::kill(static_cast<pid_t>(helper), SIGKILL);
    }
    if (!socket) {
      return reply_failure(
          {kExitSetupFailed, std::string("connect in the sandbox: ") + std::strerror(err), {}});
    }
    const int fds[] = {socket.get()};
    (void)protocol::send_message(channel_, protocol::Type::kConnected, {}, fds);
  }

  void abandon(pid_t pid, std::string message) {
    ::kill(pid, SIGKILL);
    reply_failure({kExitSetupFailed, std::move(message), {}});
  }

  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      const auto it = std::find_if(running_.begin(), running_.end(),
                                   [pid](const Running& r) { return r.pid == pid; });
      if (it == running_.end()) continue;
      if (it->notify) {
        (void)protocol::send_message(channel_, protocol::Type::kExited,
                                     protocol::encode_exit({pid, status}));
      }
      running_.erase(it);
    }
  }

  // The runtime is gone or closed the channel: no sandbox outlives it.
  [[noreturn]] void shutdown() {
    for (const Running& sandbox : running_)
      ::kill(sandbox.pid, SIGKILL);
    for (const Running& sandbox : running_) {
      while (::waitpid(sandbox.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    ::_exit(0);
  }

  int channel_;
  const SpawnerConfig& config_;
  std::vector<Running> running_;
};

// Keeps stdio (0 and 1 pointed at /dev/null: the children get their stdio per request, and
// holding the caller's stdout open could keep a reader waiting) and the channel; closes
// everything else the caller had open.
void tidy_fds(int channel) {
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    if (null_fd > 2) ::close(null_fd);
  }
  std::vector<unsigned> keep{0, 1, 2, static_cast<unsigned>(channel)};
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  unsigned next = 0;
  for (const unsigned fd : keep) {
    if (fd > next) ::syscall(SYS_close_range, next, fd - 1, 0U);
    next = fd + 1;
  }
  ::syscall(SYS_close_range, next, ~0U, 0U);
}

}  // namespace

void run(int channel, const SpawnerConfig& config, pid_t parent) noexcept {
  if (::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL), 0UL, 0UL, 0UL) != 0 ||
      ::getppid() != parent) {
    ::_exit(kExitSetupFailed);
  }
  for (const int signal_number : kIgnoredSignals)
    ::signal(signal_number, SIG_IGN);
  // A caller that dropped from root without exec is not dumpable, nor are our clones, and then
  // their /proc/<pid>/uid_map belongs to root: a rootless spawner could not write the maps. An
  // unprivileged process is dumpable anyway once it execs; nothing here needs hiding from its uid.
  if (::geteuid() != 0) ::prctl(PR_SET_DUMPABLE, 1UL, 0UL, 0UL, 0UL);
  tidy_fds(channel);

  sigset_t child_signal;
  sigemptyset(&child_signal);
  sigaddset(&child_signal, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &child_signal, nullptr);
  const int child_signals = ::signalfd(-1, &child_signal, SFD_CLOEXEC | SFD_NONBLOCK);
  if (child_signals < 0) ::_exit(kExitSetupFailed);

  try {
    Loop loop(channel, config);
    loop.serve(child_signals);
  } catch (...) {
    // Out of memory while preparing a request: nothing sane is left to do but leave, which
    // closes the channel; the caller sees the spawner gone and no sandbox outlives it.
    ::_exit(kExitSetupFailed);
  }
}

}  // namespace openshell::runtime::spawner
