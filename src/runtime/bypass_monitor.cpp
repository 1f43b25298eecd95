// The bypass monitor: answers the seccomp user notifications of build_bypass_filter(). For each
// trapped call it reads the destination out of the caller's memory, names the caller, lets the
// call continue, and reports the attempts that leave the namespace, at a bounded rate.
#include "openshell/runtime/bypass_monitor.hpp"

#include <arpa/inet.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

// Linux 6.6; Debian 12's headers predate it.
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

namespace openshell::runtime {
namespace {

// How many messages of one sendmmsg are looked at: enough for any real batch (glibc's resolver
// sends two), bounded so one call costs one small read.
constexpr size_t kMaxMessagesInspected = 64;

bool is_loopback_v4(const in_addr& address) {
  return (ntohl(address.s_addr) >> 24) == 127;
}

// Copies `length` bytes at `remote` in the caller's address space; false when it is unreadable.
bool read_remote(pid_t pid, uint64_t remote, void* local, size_t length) {
  if (remote == 0 || length == 0) return false;
  iovec mine{local, length};
  iovec theirs{reinterpret_cast<void*>(remote), length};
  return ::process_vm_readv(pid, &mine, 1, &theirs, 1, 0) == static_cast<ssize_t>(length);
}

std::optional<BypassDestination> remote_destination(pid_t pid, uint64_t address, uint64_t length) {
  sockaddr_storage storage{};
  if (address == 0 || length == 0) return std::nullopt;
  const size_t wanted = std::min<uint64_t>(length, sizeof storage);
  if (!read_remote(pid, address, &storage, wanted)) return std::nullopt;
  return bypass_destination(&storage, wanted);
}

// The first destination of a msghdr (sendmsg) or of the first messages of an mmsghdr array
// (sendmmsg) that leaves the namespace.
std::optional<BypassDestination> message_destination(pid_t pid, uint64_t messages, uint64_t count,
                                                     size_t stride) {
  count = std::min<uint64_t>(count, kMaxMessagesInspected);
  std::array<mmsghdr, kMaxMessagesInspected> copied{};
  static_assert(sizeof(mmsghdr) >= sizeof(msghdr));
  if (count == 0 || !read_remote(pid, messages, copied.data(), count * stride)) return std::nullopt;
  const auto* bytes = reinterpret_cast<const unsigned char*>(copied.data());
  for (uint64_t i = 0; i < count; ++i) {
    msghdr header{};
    std::memcpy(&header, bytes + i * stride, sizeof header);
    auto found =
        remote_destination(pid, reinterpret_cast<uint64_t>(header.msg_name), header.msg_namelen);
    if (found) return found;
  }
  return std::nullopt;
}

struct Trapped {
  const char* call = nullptr;
  std::optional<BypassDestination> destination;
  bool connects_to_proxy = false;  // connect() to 127.0.0.1:<proxy port>
};

// Whether a connect() goes to the sandbox's proxy listener (IPv4 loopback, the given port).
bool is_proxy_connect(pid_t pid, uint64_t address, uint64_t length, uint16_t proxy_port) {
  sockaddr_in target{};
  if (proxy_port == 0 || length < sizeof target) return false;
  if (!read_remote(pid, address, &target, sizeof target)) return false;
  return target.sin_family == AF_INET && is_loopback_v4(target.sin_addr) &&
         ntohs(target.sin_port) == proxy_port;
}

Trapped inspect(const seccomp_notif& request, uint16_t proxy_port) {
  const auto& args = request.data.args;
  const pid_t pid = static_cast<pid_t>(request.pid);
  switch (request.data.nr) {
    case SYS_connect: {
      Trapped trapped{"connect", remote_destination(pid, args[1], args[2])};
      trapped.connects_to_proxy =
          !trapped.destination && is_proxy_connect(pid, args[1], args[2], proxy_port);
      return trapped;
    }
    case SYS_sendto:
      return {"sendto", remote_destination(pid, args[4], args[5])};
    case SYS_sendmsg:
      return {"sendmsg", message_destination(pid, args[1], 1, sizeof(msghdr))};
    case SYS_sendmmsg:
      return {"sendmmsg", message_destination(pid, args[1], args[2], sizeof(mmsghdr))};
    default:
      return {};
  }
}

std::string executable_of(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/exe", static_cast<int>(pid));
  char target[4096];
  const ssize_t n = ::readlink(path, target, sizeof target);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof target) return {};
  return std::string(target, static_cast<size_t>(n));
}

// The protocol of the caller's socket, from a copy of its fd.
std::string protocol_of(pid_t pid, uint64_t fd_number) {
  UniqueFd process(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)));
  if (!process) return "unknown";
  UniqueFd socket(
      static_cast<int>(::syscall(SYS_pidfd_getfd, process.get(), static_cast<int>(fd_number), 0U)));
  if (!socket) return "unknown";
  int protocol = 0;
  socklen_t length = sizeof protocol;
  if (::getsockopt(socket.get(), SOL_SOCKET, SO_PROTOCOL, &protocol, &length) != 0) {
    return "unknown";
  }
  switch (protocol) {
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    default:
      return "unknown";
  }
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<BypassDestination> bypass_destination(const void* sockaddr_bytes, size_t length) {
  if (sockaddr_bytes == nullptr || length < sizeof(sa_family_t)) return std::nullopt;
  sa_family_t family = 0;
  std::memcpy(&family, sockaddr_bytes, sizeof family);
  char text[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET && length >= sizeof(sockaddr_in)) {
    sockaddr_in address{};
    std::memcpy(&address, sockaddr_bytes, sizeof address);
    if (is_loopback_v4(address.sin_addr)) return std::nullopt;
    ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
    return BypassDestination{text, ntohs(address.sin_port)};
  }
  if (family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    sockaddr_in6 address{};
    std::memcpy(&address, sockaddr_bytes, sizeof address);
    if (IN6_IS_ADDR_LOOPBACK(&address.sin6_addr)) return std::nullopt;
    if (IN6_IS_ADDR_V4MAPPED(&address.sin6_addr)) {
      in_addr mapped{};
      std::memcpy(&mapped, &address.sin6_addr.s6_addr[12], sizeof mapped);
      if (is_loopback_v4(mapped)) return std::nullopt;
    }
    ::inet_ntop(AF_INET6, &address.sin6_addr, text, sizeof text);
    return BypassDestination{text, ntohs(address.sin6_port)};
  }
  return std::nullopt;
}

Result<std::unique_ptr<BypassMonitor>> BypassMonitor::start(UniqueFd listener, Report report,
                                                            BypassMonitorOptions options) {
  if (!listener) return make_error(Errc::kInvalidArgument, "bypass monitor: no listener");
  UniqueFd wakeup(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup) return Error::from_errno("bypass monitor: eventfd");
  // The caller waits in the kernel for each answer: ask for synchronous wake-ups, so the
  // scheduler hands the CPU straight across instead of waking each side through another CPU.
  // Best effort: older kernels refuse the flag and are only slower.
  (void)::ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                static_cast<unsigned long>(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP));
  std::unique_ptr<BypassMonitor> monitor(
      new BypassMonitor(std::move(listener), std::move(wakeup), std::move(report), options));
  monitor->thread_ = std::thread([raw = monitor.get()] {
    raw->serve();
    raw->finished_.store(true, std::memory_order_release);
  });
  return monitor;
}

BypassMonitor::BypassMonitor(UniqueFd listener, UniqueFd wakeup, Report report,
                             BypassMonitorOptions options)
    : listener_(std::move(listener)),
      wakeup_(std::move(wakeup)),
      report_(std::move(report)),
      options_(options),
      tokens_(options.burst),
      refilled_ns_(now_ns()) {}

BypassMonitor::~BypassMonitor() {
  stop();
}

void BypassMonitor::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)::write(wakeup_.get(), &one, sizeof one);
  thread_.join();
  listener_.reset();
}

void BypassMonitor::serve() {
  for (;;) {
    pollfd ready[2] = {{listener_.get(), POLLIN, 0}, {wakeup_.get(), POLLIN, 0}};
    if (::poll(ready, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (ready[1].revents != 0) return;
    if ((ready[0].revents & POLLIN) != 0) {
      answer_one();
    } else if (ready[0].revents != 0) {
      return;  // POLLHUP: no process of the sandbox is left
    }
  }
}

void BypassMonitor::answer_one() {
  seccomp_notif request{};  // the kernel wants it zeroed
  if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &request) != 0) return;  // gone already

  // Everything about the caller is read while it waits in the kernel, so its memory, its fds
  // and its executable are the ones the call was made with.
  const Trapped trapped = inspect(request, options_.proxy_port);
  if (trapped.connects_to_proxy && options_.connect_owners) {
    // Before the call goes on, so the owner is known by the time the proxy accepts.
    options_.connect_owners->record_fd(static_cast<pid_t>(request.pid), request.data.args[0]);
  }
  std::optional<BypassAttempt> attempt;
  if (trapped.destination) {
    attempt.emplace();
    attempt->pid = static_cast<pid_t>(request.pid);
    attempt->exe = executable_of(attempt->pid);
    attempt->call = trapped.call;
    attempt->address = trapped.destination->address;
    attempt->port = trapped.destination->port;
    attempt->protocol = protocol_of(attempt->pid, request.data.args[0]);
    // The pid could have been reused if the caller died while we read: then nothing we read
    // is about the caller.
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &request.id) != 0) attempt.reset();
  }

  seccomp_notif_resp response{};
  response.id = request.id;
  response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  (void)::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &response);

  if (attempt) publish(std::move(*attempt));
}

void BypassMonitor::publish(BypassAttempt attempt) {
  attempts_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = now_ns();
  tokens_ = std::min(options_.burst, tokens_ + static_cast<double>(now - refilled_ns_) * 1e-9 *
                                                   options_.reports_per_second);
  refilled_ns_ = now;
  if (tokens_ < 1.0) {
    ++pending_suppressed_;
    unreported_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  tokens_ -= 1.0;
  attempt.suppressed = std::exchange(pending_suppressed_, 0);
  if (report_) report_(attempt);
}

}  // namespace openshell::runtime
