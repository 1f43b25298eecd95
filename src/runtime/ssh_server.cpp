// The SSH server's listener: the host key (loaded or made in memory), the socket (unix 0600 in a
// 0700 directory, or TCP), the accept thread with its admission checks, and one thread per
// connection (see ssh_connection.cpp).
#include "openshell/runtime/ssh_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>

#include "ssh_connection.hpp"
#include "ssh_launcher.hpp"
#include "ssh_throttle.hpp"

namespace openshell::runtime {
namespace {

// How often the accept loop looks at its stop flag.
constexpr int kAcceptSliceMs = 200;
// Larger than any OpenSSH private key file (an RSA-16384 one is about 12 KiB).
constexpr size_t kMaxHostKeyBytes = size_t{64} * 1024;

struct KeyFree {
  void operator()(ssh_key key) const { ssh_key_free(key); }
};
using KeyPtr = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

// The socket's directory: created 0700, or an existing one that nobody else may enter.
Result<void> prepare_directory(const std::string& socket_path) {
  const size_t slash = socket_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : socket_path.substr(0, slash);
  if (dir.empty() || dir == ".") return {};
  if (::mkdir(dir.c_str(), 0700) == 0) return {};
  if (errno != EEXIST) return Error::from_errno("mkdir " + dir);
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0) return Error::from_errno("stat " + dir);
  if (!S_ISDIR(info.st_mode) || info.st_uid != ::geteuid() || (info.st_mode & 077) != 0) {
    return make_error(Errc::kPermission,
                      dir + ": the SSH socket's directory must be ours and mode 0700");
  }
  return {};
}

Result<UniqueFd> listen_unix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);  // length checked by the parser
  if (auto dir = prepare_directory(path); !dir.ok()) return dir.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket");
  ::unlink(path.c_str());  // a stale socket of an earlier run
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return Error::from_errno("bind " + path);
  }
  if (::chmod(path.c_str(), 0600) != 0) return Error::from_errno("chmod " + path);
  if (::listen(fd.get(), SOMAXCONN) != 0) return Error::from_errno("listen " + path);
  return fd;
}

// The address without its port ("127.0.0.1", "::1").
std::string host_of(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw =
      address.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(address).sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in&>(address).sin_addr);
  return ::inet_ntop(address.ss_family, raw, text, sizeof text) != nullptr ? text : "?";
}

// "tcp:127.0.0.1:2222", "tcp:[::1]:2222".
std::string tcp_text(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET6) {
    return "tcp:[" + host_of(address) +
           "]:" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port));
  }
  return "tcp:" + host_of(address) + ":" +
         std::to_string(ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port));
}

// Binds and listens; returns the socket and its real address (port 0 becomes the kernel's pick).
Result<std::pair<UniqueFd, std::string>> listen_tcp(const SshListenAddress& listen) {
  sockaddr_storage address{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
  if (::inet_pton(AF_INET, listen.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(listen.port);
    length = sizeof *v4;
  } else if (::inet_pton(AF_INET6, listen.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(listen.port);
    length = sizeof *v6;
  } else {
    return make_error(Errc::kInvalidArgument, "not an IP address: " + listen.host);
  }
  UniqueFd fd(::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket");
  const int one = 1;
  // A restarted sandbox can take its port back while old connections sit in TIME_WAIT.
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // [::] means IPv6 only, as written; IPv4 clients need their own listener.
  if (address.ss_family == AF_INET6) {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  const std::string wanted = tcp_text(address);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    return Error::from_errno("bind " + wanted);
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) return Error::from_errno("listen " + wanted);
  socklen_t bound_length = sizeof address;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &bound_length) != 0) {
    return Error::from_errno("getsockname");
  }
  return std::pair{std::move(fd), tcp_text(address)};
}

// Who is at the other end, as the throttle counts peers: "uid N" on the unix socket, the address
// without its port over TCP (a client gets a new source port for every connection).
std::string peer_of(int fd, const sockaddr_storage& address) {
  if (address.ss_family != AF_UNIX) return host_of(address);
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return "uid ?";
  return "uid " + std::to_string(credentials.uid);
}

// The host key from `path`, refused as sshd refuses one: unreadable, not an (unencrypted)
// private key, or open to the group or others. Read through one fd so the mode checked is the
// mode of the file read.
Result<KeyPtr> load_host_key(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Error::from_errno("host key " + path);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return Error::from_errno("stat " + path);
  if (!S_ISREG(info.st_mode)) {
    return make_error(Errc::kInvalidArgument, "host key " + path + " is not a regular file");
  }
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return make_error(Errc::kPermission, "host key " + path + ": mode " + mode +
                                             " is too open (group or others may access it; "
                                             "chmod 600 it)");
  }
  std::string text(kMaxHostKeyBytes + 1, '\0');
  size_t filled = 0;
  while (filled < text.size()) {
    const ssize_t got = ::read(fd.get(), text.data() + filled, text.size() - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error::from_errno("read " + path);
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  ssh_key key = nullptr;
  const bool fits = filled <= kMaxHostKeyBytes;
  text.resize(filled);
  const bool imported = fits && ssh_pki_import_privkey_base64(text.c_str(), nullptr, nullptr,
                                                              nullptr, &key) == SSH_OK;
  ::explicit_bzero(text.data(), text.size());  // the private key does not linger on the heap
  if (!imported) {
    return make_error(Errc::kInvalidArgument,
                      "host key " + path + " is not an OpenSSH private key without passphrase");
  }
  return KeyPtr(key);
}

// "SHA256:…", as OpenSSH prints it.
std::string fingerprint_of(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t length = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) != SSH_OK) return {};
  char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, length);
  ssh_clean_pubkey_hash(&hash);
  if (text == nullptr) return {};
  std::string fingerprint(text);
  ssh_string_free_char(text);
  return fingerprint;
}

}  // namespace

Result<SshListenAddress> parse_ssh_listen(std::string_view text) {
  const auto invalid = [text](const std::string& why) {
    return make_error(Errc::kInvalidArgument, "'" + std::string(text) + "': " + why);
  };
  SshListenAddress out;
  if (text.starts_with("unix:")) {
    out.path = std::string(text.substr(5));
    if (out.path.empty()) return invalid("unix: needs a socket path");
    if (out.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return invalid("the socket path is longer than a unix socket allows");
    }
    return out;
  }
  if (!text.starts_with("tcp:")) return invalid("neither unix:PATH nor tcp:HOST:PORT");
  out.kind = SshListenAddress::Kind::kTcp;
  const std::string_view rest = text.substr(4);
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return invalid("tcp: needs HOST:PORT");
  std::string_view host = rest.substr(0, colon);
  const std::string_view port = rest.substr(colon + 1);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  out.host = std::string(host);
  in6_addr ignored{};
  const int family = bracketed ? AF_INET6 : AF_INET;
  if (::inet_pton(family, out.host.c_str(), &ignored) != 1) {
    return invalid("HOST must be an IPv4 address or an IPv6 address in brackets");
  }
  unsigned value = 0;
  const auto [end, failure] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || failure != std::errc() || end != port.data() + port.size() || value > 65535) {
    return invalid("PORT must be a number from 0 (any free port) to 65535");
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

struct SshServer::State {
  State(Spawner spawner, SshServerOptions server_options, const core::Logger& logger)
      : options(std::move(server_options)),
        launcher(std::move(spawner), options.sandbox_pidfd, options.session_template,
                 options.on_bypass, options.bypass_monitor),
        throttle(kSshMaxFailuresPerPeer, kSshFailureWindow),
        log(logger) {}

  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
    UniqueFd socket;  // a duplicate of the session's socket, shut down to end a blocked call
  };

  SshServerOptions options;
  SshListenAddress listen;
  std::string address;  // as logged: the real port
  ssh::SessionLauncher launcher;
  ssh::AuthThrottle throttle;
  const core::Logger& log;
  ssh_bind bind = nullptr;
  std::string fingerprint;
  UniqueFd listener;
  std::atomic<bool> stop{false};
  std::thread acceptor;
  std::mutex mutex;  // connections
  std::list<Connection> connections;
  uint64_t next_id = 1;
  // When each throttled peer was last warned about (accept thread only).
  std::map<std::string, ssh::AuthThrottle::Clock::time_point> throttle_warned;

  void join_finished() {
    const std::lock_guard lock(mutex);
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->done.load()) {
        it->thread.join();
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
  }

  // One warning per peer per window: a throttled peer that keeps knocking cannot flood the log.
  void warn_throttled(const std::string& peer) {
    const auto now = ssh::AuthThrottle::Clock::now();
    std::erase_if(throttle_warned,
                  [now](const auto& entry) { return now - entry.second >= kSshFailureWindow; });
    if (!throttle_warned.emplace(peer, now).second) return;
    log.warn(
        "ssh: {} failed to authenticate {} times within {} s; its connections are closed at "
        "once until then",
        peer, kSshMaxFailuresPerPeer, kSshFailureWindow.count());
  }

  void accept_loop() {
    while (!stop.load()) {
      pollfd ready{listener.get(), POLLIN, 0};
      if (::poll(&ready, 1, kAcceptSliceMs) <= 0) continue;
      sockaddr_storage from{};
      socklen_t from_length = sizeof from;
      UniqueFd client(::accept4(listener.get(), reinterpret_cast<sockaddr*>(&from), &from_length,
                                SOCK_CLOEXEC));
      if (!client) continue;
      if (from.ss_family != AF_UNIX) {
        // SSH writes small packets (echoes, acks, exit statuses): without this each waits for
        // the peer's delayed ACK, ~40 ms a round trip.
        const int one = 1;
        ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      const std::string peer = peer_of(client.get(), from);
      if (!throttle.admits(peer)) {
        warn_throttled(peer);
        continue;
      }
      join_finished();
      const std::lock_guard lock(mutex);
      if (connections.size() >= kSshMaxConnections) {
        log.warn("ssh: {} connections already; refused one from {}", connections.size(), peer);
        continue;
      }
      ssh_session session = ssh_new();
      if (session == nullptr) continue;
      UniqueFd duplicate(::fcntl(client.get(), F_DUPFD_CLOEXEC, 0));
      // libssh owns the fd from here (ssh_free closes it).
      if (ssh_bind_accept_fd(bind, session, client.release()) != SSH_OK) {
        log.warn("ssh: accept: {}", ssh_get_error(bind));
        ssh_free(session);
        continue;
      }
      const uint64_t id = next_id++;
      Connection& connection = connections.emplace_back();
      connection.socket = std::move(duplicate);
      connection.thread = std::thread([this, session, id, peer, &connection] {
        const ssh::ConnectionContext context{options, launcher, throttle, log, stop};
        ssh::serve_connection(session, context, peer, id);
        // libssh closed its fd; our duplicate would keep the connection open (the client
        // waiting) until the next accept reaps this thread.
        ::shutdown(connection.socket.get(), SHUT_RDWR);
        connection.done = true;
      });
    }
  }

  ~State() {
    stop = true;
    if (acceptor.joinable()) acceptor.join();
    {
      const std::lock_guard lock(mutex);
      for (Connection& connection : connections) {
        if (connection.socket) ::shutdown(connection.socket.get(), SHUT_RDWR);
      }
    }
    for (Connection& connection : connections)
      connection.thread.join();
    connections.clear();
    if (bind != nullptr) ssh_bind_free(bind);
    if (listener && listen.kind == SshListenAddress::Kind::kUnix) ::unlink(listen.path.c_str());
  }
};

Result<std::unique_ptr<SshServer>> SshServer::start(Spawner spawner, SshServerOptions options,
                                                    const core::Logger& log) {
  if (options.sandbox_pidfd < 0) return make_error(Errc::kInvalidArgument, "ssh: no sandbox");
  auto listen = parse_ssh_listen(options.listen);
  if (!listen.ok()) return Error{listen.error().code, "ssh: " + listen.error().message};
  if (::access(options.authorized_keys_path.c_str(), R_OK) != 0) {
    return Error::from_errno("ssh: authorized keys " + options.authorized_keys_path);
  }
  ssh_init();
  KeyPtr host_key;
  if (!options.host_key_path.empty()) {
    auto loaded = load_host_key(options.host_key_path);
    if (!loaded.ok()) return Error{loaded.error().code, "ssh: " + loaded.error().message};
    host_key = std::move(*loaded);
  } else {
    ssh_key generated = nullptr;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &generated) != SSH_OK) {
      return make_error(Errc::kInternal, "ssh: generating the host key failed");
    }
    host_key.reset(generated);
  }
  auto state = std::make_unique<State>(std::move(spawner), std::move(options), log);
  state->listen = std::move(*listen);
  state->fingerprint = fingerprint_of(host_key.get());
  state->bind = ssh_bind_new();
  if (state->bind == nullptr) return make_error(Errc::kInternal, "ssh: ssh_bind_new failed");
  bool no = false;
  ssh_bind_options_set(state->bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no);
  if (ssh_bind_options_set(state->bind, SSH_BIND_OPTIONS_IMPORT_KEY, host_key.get()) != SSH_OK) {
    return make_error(Errc::kInternal, std::string("ssh: host key: ") + ssh_get_error(state->bind));
  }
  static_cast<void>(host_key.release());  // the bind took it (BUILD-NOTES pitfall 14)
  if (state->listen.kind == SshListenAddress::Kind::kUnix) {
    auto listener = listen_unix(state->listen.path);
    if (!listener.ok()) return Error{listener.error().code, "ssh: " + listener.error().message};
    state->listener = std::move(*listener);
    state->address = "unix:" + state->listen.path;
  } else {
    auto listener = listen_tcp(state->listen);
    if (!listener.ok()) return Error{listener.error().code, "ssh: " + listener.error().message};
    state->listener = std::move(listener->first);
    state->address = std::move(listener->second);
  }
  State* raw = state.get();
  state->acceptor = std::thread([raw] { raw->accept_loop(); });
  log.info("ssh: listening on {}; host key {}", state->address, state->fingerprint);
  return std::unique_ptr<SshServer>(new SshServer(std::move(state)));
}

SshServer::SshServer(std::unique_ptr<State> state) : state_(std::move(state)) {}

SshServer::~SshServer() = default;

const std::string& SshServer::host_key_fingerprint() const {
  return state_->fingerprint;
}

const std::string& SshServer::address() const {
  return state_->address;
}

}  // namespace openshell::runtime
