// The SSH server's listener: the in-memory host key, the unix socket (0600 in a 0700 directory),
// the accept thread and one thread per connection (see ssh_connection.cpp).
#include "openshell/runtime/ssh_server.hpp"

#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

#include "ssh_connection.hpp"
#include "ssh_launcher.hpp"

namespace openshell::runtime {
namespace {

// How often the accept loop looks at its stop flag.
constexpr int kAcceptSliceMs = 200;

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
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return make_error(Errc::kInvalidArgument, "SSH socket path is empty or too long: " + path);
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
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

struct SshServer::State {
  State(Spawner spawner, SshServerOptions server_options, const core::Logger& logger)
      : options(std::move(server_options)),
        launcher(std::move(spawner), options.sandbox_pidfd, options.session_template),
        log(logger) {}

  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
    UniqueFd socket;  // a duplicate of the session's socket, shut down to end a blocked call
  };

  SshServerOptions options;
  ssh::SessionLauncher launcher;
  const core::Logger& log;
  ssh_bind bind = nullptr;
  std::string fingerprint;
  UniqueFd listener;
  std::atomic<bool> stop{false};
  std::thread acceptor;
  std::mutex mutex;  // connections
  std::list<Connection> connections;
  uint64_t next_id = 1;

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

  void accept_loop() {
    while (!stop.load()) {
      pollfd ready{listener.get(), POLLIN, 0};
      if (::poll(&ready, 1, kAcceptSliceMs) <= 0) continue;
      UniqueFd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client) continue;
      join_finished();
      const std::lock_guard lock(mutex);
      if (connections.size() >= kSshMaxConnections) {
        log.warn("ssh: {} connections already; refused one", connections.size());
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
      connection.thread = std::thread([this, session, id, &connection] {
        const ssh::ConnectionContext context{options.authorized_keys_path, launcher, log, stop};
        ssh::serve_connection(session, context, id);
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
    if (listener) ::unlink(options.socket_path.c_str());
  }
};

Result<std::unique_ptr<SshServer>> SshServer::start(Spawner spawner, SshServerOptions options,
                                                    const core::Logger& log) {
  if (options.sandbox_pidfd < 0) return make_error(Errc::kInvalidArgument, "ssh: no sandbox");
  if (::access(options.authorized_keys_path.c_str(), R_OK) != 0) {
    return Error::from_errno("ssh: authorized keys " + options.authorized_keys_path);
  }
  ssh_init();
  auto state = std::make_unique<State>(std::move(spawner), std::move(options), log);
  ssh_key host_key = nullptr;
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &host_key) != SSH_OK) {
    return make_error(Errc::kInternal, "ssh: generating the host key failed");
  }
  state->fingerprint = fingerprint_of(host_key);
  state->bind = ssh_bind_new();
  if (state->bind == nullptr) {
    ssh_key_free(host_key);
    return make_error(Errc::kInternal, "ssh: ssh_bind_new failed");
  }
  bool no = false;
  ssh_bind_options_set(state->bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no);
  // The bind takes the key (BUILD-NOTES pitfall 14): not freed here.
  if (ssh_bind_options_set(state->bind, SSH_BIND_OPTIONS_IMPORT_KEY, host_key) != SSH_OK) {
    ssh_key_free(host_key);
    return make_error(Errc::kInternal, std::string("ssh: host key: ") + ssh_get_error(state->bind));
  }
  auto listener = listen_unix(state->options.socket_path);
  if (!listener.ok()) return Error{listener.error().code, "ssh: " + listener.error().message};
  state->listener = std::move(*listener);
  State* raw = state.get();
  state->acceptor = std::thread([raw] { raw->accept_loop(); });
  log.info("ssh: listening on unix:{}; host key {}", state->options.socket_path,
           state->fingerprint);
  return std::unique_ptr<SshServer>(new SshServer(std::move(state)));
}

SshServer::SshServer(std::unique_ptr<State> state) : state_(std::move(state)) {}

SshServer::~SshServer() = default;

const std::string& SshServer::host_key_fingerprint() const {
  return state_->fingerprint;
}

}  // namespace openshell::runtime
