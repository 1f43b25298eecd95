// ControlServer: where the control socket lives and who may use it. Unix sockets are guarded by
// file permissions (gRPC creates them 0755 under the umask, so we tighten them); TCP by a token.
#include "openshell/control/server.hpp"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "service.hpp"

namespace openshell::control {

namespace {

// How long shutdown waits for handlers (a push in progress) before cancelling them.
constexpr std::chrono::seconds kShutdownGrace{2};

// Is something accepting on `path`? Distinguishes a live server from a stale socket file.
bool socket_is_live(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  const bool live =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return live;
}

// Prepares the socket's directory and path before gRPC binds it.
Result<void> prepare_unix_path(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return make_error(Errc::kInvalidArgument, "control socket path is too long: " + path);
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  struct stat info {};
  if (::stat(parent.c_str(), &info) != 0) {
    if (errno != ENOENT) return Error::from_errno("stat " + parent.string());
    // Created 0700: nobody else can reach the socket even during the moment before chmod.
    if (::mkdir(parent.c_str(), 0700) != 0) return Error::from_errno("mkdir " + parent.string());
  } else if (!S_ISDIR(info.st_mode)) {
    return make_error(Errc::kInvalidArgument, parent.string() + " is not a directory");
  }
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) {
      return make_error(Errc::kInvalidArgument,
                        "control socket path " + path + " exists and is not a socket");
    }
    if (socket_is_live(path)) {
      return make_error(Errc::kUnavailable,
                        "control socket " + path + " is in use by a running server");
    }
    if (::unlink(path.c_str()) != 0) return Error::from_errno("unlink stale socket " + path);
  }
  return {};
}

}  // namespace

struct ControlServer::State {
  Endpoint endpoint;
  std::unique_ptr<detail::ControlService> service;
  std::unique_ptr<grpc::Server> server;
  bool stopped = false;
};

ControlServer::ControlServer(std::unique_ptr<State> state) : state_(std::move(state)) {}

ControlServer::~ControlServer() {
  shutdown();
}

const Endpoint& ControlServer::endpoint() const {
  return state_->endpoint;
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(ServerOptions options,
                                                            proxy::ProxyControl& control) {
  const Endpoint& endpoint = options.endpoint;
  if (endpoint.kind == Endpoint::Kind::kTcp && options.token.empty() && !options.tls) {
    return make_error(Errc::kInvalidArgument,
                      "control over TCP needs a token (--control-token-file) or mTLS "
                      "(--control-tls-*): no unauthenticated TCP control");
  }
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    if (auto prepared = prepare_unix_path(endpoint.address); !prepared.ok()) {
      return prepared.error();
    }
  }
  auto state = std::make_unique<State>();
  state->endpoint = endpoint;
  state->service = std::make_unique<detail::ControlService>(control, options.token);
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen =
      endpoint.kind == Endpoint::Kind::kUnix ? "unix:" + endpoint.address : endpoint.address;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls) {
    // Every client must present a certificate that chains to the client CA.
    grpc::SslServerCredentialsOptions tls(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_root_certs = options.tls->client_ca_pem;
    tls.pem_key_cert_pairs.push_back({options.tls->key_pem, options.tls->cert_pem});
    credentials = grpc::SslServerCredentials(tls);
  }
  builder.AddListeningPort(listen, credentials, &port);
  builder.RegisterService(state->service.get());
  state->server = builder.BuildAndStart();
  if (!state->server || port == 0) {
    return make_error(Errc::kIo, "cannot listen for control on " + endpoint.to_string());
  }
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    if (::chmod(endpoint.address.c_str(), 0600) != 0) {
      state->server->Shutdown();
      return Error::from_errno("chmod 0600 " + endpoint.address);
    }
  } else {
    const size_t colon = endpoint.address.rfind(':');
    state->endpoint.address = endpoint.address.substr(0, colon + 1) + std::to_string(port);
  }
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(state)));
}

void ControlServer::shutdown() {
  State& s = *state_;
  if (s.stopped) return;
  s.stopped = true;
  s.service->stop();
  s.server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  s.server->Wait();
  if (s.endpoint.kind == Endpoint::Kind::kUnix) ::unlink(s.endpoint.address.c_str());
}

}  // namespace openshell::control
