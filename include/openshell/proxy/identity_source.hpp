// Where the proxy learns which process opened a connection when the identity is not carried on
// the wire (DESIGN.md "Identity"): `sandbox` mode plugs the runtime's procfs lookup in here.
#pragma once

// See proxy/relay.hpp: GCC 12 -O2 false -Wnull-dereference inside Asio's scheduler.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/ip/tcp.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::proxy {

// A lookup walks procfs and may hash an executable the first time it is seen; past this the
// connection is denied rather than left waiting (the lookup's result is then dropped).
inline constexpr std::chrono::milliseconds kIdentifyTimeout{5000};

// The process behind a connection, as an identity source found it.
struct SourceIdentity {
  int pid = 0;
  std::string exe;
  std::string exe_sha256;              // hex
  std::vector<std::string> ancestors;  // exe paths, nearest first
  std::vector<std::string> cmdline_paths;
};

using IdentityCallback = std::function<void(Result<SourceIdentity>)>;

class IdentitySource {
 public:
  virtual ~IdentitySource() = default;
  // Identifies the client end `client` of a connection accepted on `local`. The work (procfs,
  // hashing) must not run on the caller's thread: the proxy calls this from an I/O thread.
  // `done` is called exactly once, from any thread; an error denies the connection.
  virtual void identify(const asio::ip::tcp::endpoint& client, const asio::ip::tcp::endpoint& local,
                        IdentityCallback done) = 0;
};

}  // namespace openshell::proxy
