// Identity lookup cost per new connection (issue 7): runtime::IdentityResolver::identify, called
// the way sandbox/process_identity.cpp calls it, in a network namespace holding 50 processes.
//
// Set-up, as `openshell sandbox` has it: an "init" process in its own network namespace creates
// the listener there and hands it to this process (the proxy side), which accepts. The init has
// --procs children (`sleep`) and one client (python3, else this binary in client mode) that keeps
// one connection open for the whole run and opens a new one on demand. Each sample: the client
// connects, we accept, and time identify(peer, local) with the resolver built like
// ProcessIdentitySource (netns pid = root pid = the init). "cold" uses a fresh resolver each time
// (the first connection of that process: every exe on the chain hashed); "warm" reuses one.
// Needs root (a network namespace). Prints p50/p95/mean in µs and the 200 µs p50 target.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "openshell/runtime/identity.hpp"
#include "openshell/runtime/unique_fd.hpp"

namespace {

using openshell::runtime::ConnectOwners;
using openshell::runtime::IdentityResolver;
using openshell::runtime::SocketDiag;
using openshell::runtime::UniqueFd;
using Clock = std::chrono::steady_clock;

// Issue 7's scenario and target.
constexpr int kDefaultProcs = 50;
constexpr int kDefaultWarm = 2000;
constexpr int kDefaultCold = 200;
constexpr double kTargetP50Us = 200.0;
constexpr const char* kPython = "/usr/bin/python3";

// The python client: one connection held open, then on each line from stdin closes the previous
// extra connection and opens a new one; prints a line once connected.
constexpr const char* kPythonClient = R"(import socket, sys
port = int(sys.argv[1])
held = socket.create_connection(("127.0.0.1", port))
extra = None
print("ready", flush=True)
for line in sys.stdin:
    if extra is not None:
        extra.close()
    extra = socket.create_connection(("127.0.0.1", port))
    print("connected", flush=True)
)";

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "identity_bench: {}: {}\n", what, std::strerror(errno));
  std::exit(1);
}

void bring_loopback_up() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) die("socket");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd.get(), SIOCGIFFLAGS, &request) != 0) die("SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(fd.get(), SIOCSIFFLAGS, &request) != 0) die("SIOCSIFFLAGS lo");
}

void send_fd(int channel, int fd) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
  if (::sendmsg(channel, &message, 0) != 1) die("sendmsg");
}

UniqueFd receive_fd(int channel) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (::recvmsg(channel, &message, 0) != 1) die("recvmsg");
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (header == nullptr || header->cmsg_type != SCM_RIGHTS) die("no fd received");
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
  return UniqueFd(fd);
}

asio::ip::tcp::endpoint endpoint_of(const sockaddr_in& address) {
  return {asio::ip::address_v4(ntohl(address.sin_addr.s_addr)), ntohs(address.sin_port)};
}

// This binary's client mode (no python3): same protocol as kPythonClient.
int run_client(uint16_t port) {
  auto connect_once = [port] {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      die("client connect");
    }
    return fd;
  };
  UniqueFd held = connect_once();
  UniqueFd extra;
  std::puts("ready");
  std::fflush(stdout);
  char line[16];
  while (std::fgets(line, sizeof line, stdin) != nullptr) {
    extra.reset();
    extra = connect_once();
    std::puts("connected");
    std::fflush(stdout);
  }
  return 0;
}

struct Sandbox {
  pid_t init = 0;
  UniqueFd listener;
  UniqueFd diag;        // NETLINK_SOCK_DIAG socket made inside the namespace
  UniqueFd to_client;   // a line here: open a new connection
  FILE* from_client{};  // "ready", then "connected" per request
  std::string client_exe;
  pid_t client_pid = 0;  // learnt from the first lookup

  Sandbox() = default;
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;
  ~Sandbox() {
    if (from_client != nullptr) std::fclose(from_client);
    if (init > 0) {
      ::kill(init, SIGKILL);  // its children have PR_SET_PDEATHSIG(SIGKILL)
      ::waitpid(init, nullptr, 0);
    }
  }
};

// The init: new network namespace, lo up, listener handed back, `procs` sleepers, one client.
[[noreturn]] void run_init(int channel, int procs, UniqueFd client_in, UniqueFd client_out,
                           const std::string& self, bool python) {
  if (::unshare(CLONE_NEWNET) != 0) die("unshare(CLONE_NEWNET) (needs root)");
  bring_loopback_up();
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), size) != 0 ||
      ::listen(listener.get(), 128) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    die("listener");
  }
  const std::string port = std::to_string(ntohs(address.sin_port));
  send_fd(channel, listener.get());
  listener.reset();  // only the proxy side holds it, as in the sandbox
  // For the sock_diag comparison: a netlink socket answers for the namespace it was made in.
  UniqueFd diag(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!diag) die("socket(NETLINK_SOCK_DIAG)");
  send_fd(channel, diag.get());
  diag.reset();

  for (int i = 0; i < procs; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) die("fork sleeper");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execl("/bin/sleep", "sleep", "3600", static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  const pid_t client = ::fork();
  if (client < 0) die("fork client");
  if (client == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(client_in.get(), 0);
    ::dup2(client_out.get(), 1);
    if (python) {
      ::execl(kPython, "python3", "-c", kPythonClient, port.c_str(), static_cast<char*>(nullptr));
    } else {
      ::execl(self.c_str(), "identity_bench", "--client", port.c_str(),
              static_cast<char*>(nullptr));
    }
    _exit(127);
  }
  // Only the client holds its ends now: its death shows as EOF on the bench's side.
  client_in.reset();
  client_out.reset();
  for (;;)
    ::pause();  // like the sandbox's init, it only waits
}

// (read end, write end) of a pipe, or the two ends of a socketpair.
std::pair<UniqueFd, UniqueFd> fd_pair(bool socket) {
  int fds[2];
  const int rc =
      socket ? ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) : ::pipe2(fds, O_CLOEXEC);
  if (rc != 0) die(socket ? "socketpair" : "pipe2");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void start_sandbox(Sandbox& sandbox, int procs, bool python) {
  auto [channel, init_channel] = fd_pair(true);
  auto [client_in, to_client] = fd_pair(false);
  auto [from_client, client_out] = fd_pair(false);
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) die("readlink /proc/self/exe");
  self[n] = '\0';

  sandbox.client_exe = python ? kPython : self;
  sandbox.init = ::fork();
  if (sandbox.init < 0) die("fork init");
  if (sandbox.init == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    channel.reset();
    to_client.reset();
    from_client.reset();
    run_init(init_channel.get(), procs, std::move(client_in), std::move(client_out), self, python);
  }
  init_channel.reset();
  client_in.reset();
  client_out.reset();
  sandbox.listener = receive_fd(channel.get());
  sandbox.diag = receive_fd(channel.get());
  sandbox.to_client = std::move(to_client);
  sandbox.from_client = ::fdopen(from_client.release(), "r");
  if (sandbox.from_client == nullptr) die("fdopen");
}

std::string read_line(FILE* from) {
  char line[64];
  if (std::fgets(line, sizeof line, from) == nullptr) die("client ended");
  return line;
}

// One new connection from the client, accepted; (accepted fd, peer, local).
struct Accepted {
  UniqueFd fd;
  asio::ip::tcp::endpoint peer;
  asio::ip::tcp::endpoint local;
};

Accepted accept_one(Sandbox& sandbox) {
  Accepted accepted;
  sockaddr_in peer{};
  socklen_t size = sizeof peer;
  accepted.fd = UniqueFd(
      ::accept4(sandbox.listener.get(), reinterpret_cast<sockaddr*>(&peer), &size, SOCK_CLOEXEC));
  if (!accepted.fd) die("accept");
  sockaddr_in local{};
  size = sizeof local;
  if (::getsockname(accepted.fd.get(), reinterpret_cast<sockaddr*>(&local), &size) != 0) {
    die("getsockname");
  }
  accepted.peer = endpoint_of(peer);
  accepted.local = endpoint_of(local);
  return accepted;
}

// Closes with a reset: no TIME_WAIT rows pile up in the namespace's /proc/net/tcp.
void close_with_reset(UniqueFd& fd) {
  linger abort{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
  fd.reset();
}

Accepted new_connection(Sandbox& sandbox) {
  if (::write(sandbox.to_client.get(), "c\n", 2) != 2) die("write to client");
  Accepted accepted = accept_one(sandbox);
  read_line(sandbox.from_client);  // the client has returned from connect()
  return accepted;
}

struct Stats {
  double p50 = 0, p95 = 0, mean = 0, min = 0;
};

Stats stats_of(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  const auto count = static_cast<double>(us.size());
  auto at = [&us, count](double q) { return us[static_cast<std::size_t>(q * (count - 1) + 0.5)]; };
  return {at(0.5), at(0.95), std::accumulate(us.begin(), us.end(), 0.0) / count, us.front()};
}

double elapsed_us(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

uint64_t diag_inode(int diag, const asio::ip::tcp::endpoint& client,
                    const asio::ip::tcp::endpoint& server);

// How the resolver finds the socket and its owner.
enum class Path {
  kProcfs,  // spec §6 as written: /proc/<init>/net/tcp, then every process's fd table
  kFast,    // as `openshell sandbox` runs it: SocketDiag, and the connecting pid the bypass
            // monitor recorded at connect() (recorded here, untimed, as the monitor would)
};

std::unique_ptr<IdentityResolver> make_resolver(const Sandbox& sandbox, Path path,
                                                const std::shared_ptr<ConnectOwners>& owners) {
  if (path == Path::kProcfs) return std::make_unique<IdentityResolver>(sandbox.init, sandbox.init);
  auto diag =
      std::make_shared<SocketDiag>(UniqueFd(::fcntl(sandbox.diag.get(), F_DUPFD_CLOEXEC, 0)));
  return std::make_unique<IdentityResolver>(sandbox.init, sandbox.init, std::move(diag), owners);
}

// cold: a fresh resolver per lookup (nothing cached); warm: one resolver, its cache filled first.
Stats measure_lookups(Sandbox& sandbox, int samples, bool cold, uint64_t& hashes_per_lookup,
                      Path path = Path::kProcfs) {
  std::vector<double> us;
  auto owners = std::make_shared<ConnectOwners>();
  auto shared = make_resolver(sandbox, path, owners);
  hashes_per_lookup = 0;
  for (int i = -1; i < samples; ++i) {  // i == -1: unrecorded, fills the warm cache
    Accepted accepted = new_connection(sandbox);
    if (path == Path::kFast) {
      if (sandbox.client_pid <= 0) die("the client's pid is not known yet");
      owners->record(diag_inode(sandbox.diag.get(), accepted.peer, accepted.local),
                     sandbox.client_pid);
    }
    auto fresh = cold ? make_resolver(sandbox, path, owners) : nullptr;
    IdentityResolver& resolver = cold ? *fresh : *shared;
    const uint64_t hashes_before = resolver.hashes_computed();
    const auto start = Clock::now();
    auto identity = resolver.identify(accepted.peer, accepted.local);
    const double took = elapsed_us(start);
    if (!identity.ok()) {
      fmt::print(stderr, "identity_bench: identify failed: {}\n", identity.error().message);
      std::exit(1);
    }
    if (i == -1) {
      if (path == Path::kProcfs && !cold) {
        fmt::print("# owner pid {} exe {} ancestors {}\n", identity->pid, identity->exe,
                   identity->ancestors.size());
      }
      sandbox.client_pid = identity->pid;
    } else {
      us.push_back(took);
      hashes_per_lookup = resolver.hashes_computed() - hashes_before;
    }
    close_with_reset(accepted.fd);
  }
  return stats_of(std::move(us));
}

// What step 1 of identify costs alone when the socket is IPv4 (tcp6 is then not read): reading
// and parsing the namespace's /proc/<init>/net/tcp. The kernel walks the whole established hash
// table for it, which is shared by all namespaces and sized by RAM, not by the sockets listed.
Stats measure_tcp_scan(Sandbox& sandbox, int samples) {
  std::vector<double> us;
  for (int i = 0; i < samples; ++i) {
    Accepted accepted = new_connection(sandbox);
    const auto start = Clock::now();
    // As identify does it: read until the client end's row, then stop.
    std::ifstream file("/proc/" + std::to_string(sandbox.init) + "/net/tcp");
    std::string line;
    uint64_t inode = 0;
    while (inode == 0 && std::getline(file, line)) {
      const auto row = openshell::runtime::parse_proc_net_tcp_row(line);
      if (row && row->local == accepted.peer && row->remote == accepted.local) inode = row->inode;
    }
    us.push_back(elapsed_us(start));
    if (inode == 0) die("no row in /proc/net/tcp");
    close_with_reset(accepted.fd);
  }
  return stats_of(std::move(us));
}

// The alternative to step 1: ask the kernel for the one socket with this 4-tuple (an exact
// established-hash lookup, SOCK_DIAG_BY_FAMILY without NLM_F_DUMP); its inode, or 0.
uint64_t diag_inode(int diag, const asio::ip::tcp::endpoint& client,
                    const asio::ip::tcp::endpoint& server) {
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.request.sdiag_family = AF_INET;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;
  message.request.id.idiag_sport = htons(client.port());
  message.request.id.idiag_dport = htons(server.port());
  message.request.id.idiag_src[0] = htonl(client.address().to_v4().to_uint());
  message.request.id.idiag_dst[0] = htonl(server.address().to_v4().to_uint());
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (::send(diag, &message, sizeof message, 0) != static_cast<ssize_t>(sizeof message)) {
    die("send sock_diag");
  }
  alignas(nlmsghdr) char reply[8192];
  const ssize_t n = ::recv(diag, reply, sizeof reply, 0);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(inet_diag_msg)))) return 0;
  const auto* header = reinterpret_cast<const nlmsghdr*>(reply);
  if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) return 0;
  inet_diag_msg found{};
  std::memcpy(&found, reply + NLMSG_HDRLEN, sizeof found);
  return found.idiag_inode;
}

Stats measure_diag(Sandbox& sandbox, int samples) {
  std::vector<double> us;
  for (int i = 0; i < samples; ++i) {
    Accepted accepted = new_connection(sandbox);
    const auto start = Clock::now();
    const uint64_t inode = diag_inode(sandbox.diag.get(), accepted.peer, accepted.local);
    us.push_back(elapsed_us(start));
    if (inode == 0) die("sock_diag found no socket");
    close_with_reset(accepted.fd);
  }
  return stats_of(std::move(us));
}

double megabytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<double>(st.st_size) / 1e6 : 0.0;
}

int parse_int(const char* text, const char* flag) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < 0 || value > 1'000'000) {
    fmt::print(stderr, "identity_bench: {} wants a number, got '{}'\n", flag, text);
    std::exit(2);
  }
  return static_cast<int>(value);
}

}  // namespace

int main(int argc, char** argv) {
  int procs = kDefaultProcs;
  int warm = kDefaultWarm;
  int cold = kDefaultCold;
  bool python = ::access(kPython, X_OK) == 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--client" && i + 1 < argc) {
      return run_client(static_cast<uint16_t>(parse_int(argv[i + 1], "--client")));
    }
    if (arg == "--procs" && i + 1 < argc) {
      procs = parse_int(argv[++i], "--procs");
    } else if (arg == "--warm" && i + 1 < argc) {
      warm = parse_int(argv[++i], "--warm");
    } else if (arg == "--cold" && i + 1 < argc) {
      cold = parse_int(argv[++i], "--cold");
    } else if (arg == "--no-python") {
      python = false;
    } else {
      fmt::print(stderr,
                 "usage: identity_bench [--procs N (50)] [--warm N (2000)] [--cold N (200)] "
                 "[--no-python]\n");
      return 2;
    }
  }
  if (warm < 1 || cold < 1) {
    fmt::print(stderr, "identity_bench: --warm and --cold must be ≥ 1\n");
    return 2;
  }
  if (::geteuid() != 0) {
    fmt::print(stderr, "identity_bench: needs root (a network namespace of its own)\n");
    return 77;  // meson's "skipped"
  }
  ::signal(SIGPIPE, SIG_IGN);

  Sandbox sandbox;
  start_sandbox(sandbox, procs, python);
  if (read_line(sandbox.from_client).rfind("ready", 0) != 0) die("client not ready");
  UniqueFd held = accept_one(sandbox).fd;  // the connection the client keeps for the whole run

  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  self[std::max<ssize_t>(n, 0)] = '\0';
  fmt::print(
      "# {} sleepers + 1 client ({}, {:.1f} MB) under an init (this binary, {:.1f} MB) "
      "in a network namespace\n",
      procs, sandbox.client_exe, megabytes(sandbox.client_exe), megabytes(self));

  uint64_t warm_hashes = 0;
  uint64_t cold_hashes = 0;
  const Stats warm_stats = measure_lookups(sandbox, warm, false, warm_hashes);
  const Stats cold_stats = measure_lookups(sandbox, cold, true, cold_hashes);
  uint64_t fast_warm_hashes = 0;
  uint64_t fast_cold_hashes = 0;
  const Stats fast_warm = measure_lookups(sandbox, warm, false, fast_warm_hashes, Path::kFast);
  const Stats fast_cold = measure_lookups(sandbox, cold, true, fast_cold_hashes, Path::kFast);
  const Stats scan = measure_tcp_scan(sandbox, warm);
  const Stats diag = measure_diag(sandbox, warm);

  fmt::print("| lookup | samples | p50 µs | p95 µs | mean µs | min µs | files hashed |\n");
  fmt::print("|---|---|---|---|---|---|---|\n");
  fmt::print(
      "| **sandbox path, warm** (sock_diag + connect owner, hash cached) | {} | {:.1f} | {:.1f} | "
      "{:.1f} | {:.1f} | {} |\n",
      warm, fast_warm.p50, fast_warm.p95, fast_warm.mean, fast_warm.min, fast_warm_hashes);
  fmt::print(
      "| sandbox path, cold (first connection of the process) | {} | {:.1f} | {:.1f} | {:.1f} | "
      "{:.1f} | {} |\n",
      cold, fast_cold.p50, fast_cold.p95, fast_cold.mean, fast_cold.min, fast_cold_hashes);
  fmt::print(
      "| procfs fallback, warm (hash cached) | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {} |\n",
      warm, warm_stats.p50, warm_stats.p95, warm_stats.mean, warm_stats.min, warm_hashes);
  fmt::print(
      "| procfs fallback, cold | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} "
      "| {} |\n",
      cold, cold_stats.p50, cold_stats.p95, cold_stats.mean, cold_stats.min, cold_hashes);
  fmt::print(
      "| (part: step 1) /proc/<init>/net/tcp read + parsed | {} | {:.1f} | {:.1f} | "
      "{:.1f} | {:.1f} | — |\n",
      warm, scan.p50, scan.p95, scan.mean, scan.min);
  fmt::print(
      "| (alternative to step 1) sock_diag exact 4-tuple lookup | {} | {:.1f} | {:.1f} | "
      "{:.1f} | {:.1f} | — |\n",
      warm, diag.p50, diag.p95, diag.mean, diag.min);
  fmt::print(
      "\nwarm p50 − step 1 p50 (steps 2–6: owner search over {} processes, exe, cached "
      "hash, ancestors): {:.1f} µs\n",
      procs + 2, warm_stats.p50 - scan.p50);
  const bool pass = fast_warm.p50 <= kTargetP50Us;
  fmt::print(
      "\nTarget: identity lookup p50 ≤ {:.0f} µs with {} processes (sandbox path, warm): {} "
      "({:.1f} µs)\n",
      kTargetP50Us, procs, pass ? "PASS" : "FAIL", fast_warm.p50);
  close_with_reset(held);
  return 0;
}
