// Sandbox mode's identity source: runtime::IdentityResolver answering for the proxy.
#include "process_identity.hpp"

#include <asio/post.hpp>
#include <exception>
#include <string>
#include <utility>

namespace openshell::sandbox {

namespace {

// The sandbox's init is openshell itself (the supervisor inside the pid namespace), not part of
// the workload: a `binaries` rule naming openshell must not admit every process as a descendant.
proxy::SourceIdentity to_source_identity(runtime::ProcessIdentity process, pid_t init_pid) {
  proxy::SourceIdentity out;
  out.pid = static_cast<int>(process.pid);
  out.exe = std::move(process.exe);
  out.exe_sha256 = runtime::sha256_hex(process.exe_sha256);
  for (runtime::AncestorIdentity& ancestor : process.ancestors) {
    if (ancestor.pid != init_pid) out.ancestors.push_back(std::move(ancestor.exe));
  }
  out.cmdline_paths = std::move(process.cmdline_paths);
  return out;
}

}  // namespace

ProcessIdentitySource::ProcessIdentitySource(
    pid_t sandbox_pid, std::shared_ptr<runtime::SocketDiag> socket_diag,
    std::shared_ptr<const runtime::ConnectOwners> connect_owners)
    : init_pid_(sandbox_pid),
      resolver_(std::make_shared<runtime::IdentityResolver>(
          sandbox_pid, sandbox_pid, std::move(socket_diag), std::move(connect_owners))) {}

ProcessIdentitySource::~ProcessIdentitySource() {
  stop();
}

void ProcessIdentitySource::stop() {
  pool_.join();
}

void ProcessIdentitySource::identify(const asio::ip::tcp::endpoint& client,
                                     const asio::ip::tcp::endpoint& local,
                                     proxy::IdentityCallback done) {
  asio::post(
      pool_, [resolver = resolver_, init = init_pid_, client, local, done = std::move(done)] {
        Result<proxy::SourceIdentity> answer = make_error(Errc::kInternal, "identification failed");
        try {
          auto found = resolver->identify(client, local);
          if (found.ok()) {
            answer = to_source_identity(std::move(*found), init);
          } else {
            answer = found.error();
          }
        } catch (const std::exception& e) {  // allocation failure: fail closed, keep the pool alive
          answer = make_error(Errc::kInternal, std::string("identification failed: ") + e.what());
        }
        done(std::move(answer));
      });
}

}  // namespace openshell::sandbox
