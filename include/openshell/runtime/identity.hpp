// Binary identity (proxy-spec §6): which process inside the sandbox owns a TCP connection, what
// it runs (path + SHA-256 of the live image), and its ancestors. Blocking procfs and file work:
// call it off I/O threads.
#pragma once

// See proxy/relay.hpp: GCC 12 -O2 false -Wnull-dereference inside Asio's scheduler.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <asio/ip/tcp.hpp>
#pragma GCC diagnostic pop

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/runtime/connect_owners.hpp"
#include "openshell/runtime/socket_diag.hpp"

namespace openshell::runtime {

// The parent chain is short in practice; the bound stops a loop on a corrupt or racing /proc.
inline constexpr std::size_t kMaxAncestorHops = 64;

using Sha256Digest = std::array<uint8_t, 32>;
std::string sha256_hex(const Sha256Digest& digest);  // 64 lowercase hex digits

struct AncestorIdentity {
  pid_t pid = 0;
  std::string exe;
  Sha256Digest exe_sha256{};
};

struct ProcessIdentity {
  pid_t pid = 0;              // the owner (the lowest pid when several processes share the socket)
  std::string exe;            // readlink(/proc/pid/exe), one " (deleted)" stripped as §6.3 says
  Sha256Digest exe_sha256{};  // of the image the process runs, read through /proc/pid/exe
  std::vector<AncestorIdentity> ancestors;  // parent first, up to the root pid (included)
  std::vector<std::string> cmdline;         // the owner's argv
  // Absolute argv entries of the owner and its ancestors, deduplicated, minus exe paths
  // (§6.5; informational, e.g. the script a python interpreter runs).
  std::vector<std::string> cmdline_paths;
};

// One row of /proc/<pid>/net/tcp or tcp6 (exposed for tests). IPv4-mapped IPv6 addresses come
// back as IPv4, so rows compare with the endpoints an IPv4 listener reports.
struct ProcNetTcpRow {
  asio::ip::tcp::endpoint local;
  asio::ip::tcp::endpoint remote;
  uint8_t state = 0;  // 01 = ESTABLISHED, 0A = LISTEN, ...
  uint64_t inode = 0;
};
// nullopt for the heading line or anything malformed.
std::optional<ProcNetTcpRow> parse_proc_net_tcp_row(std::string_view line);

// Resolves connections of one sandbox and keeps its trust-on-first-use hash cache. Thread-safe:
// several threads may identify at once (hashing happens outside the lock).
class IdentityResolver {
 public:
  // netns_pid: a process inside the sandbox's network namespace (its /proc/<pid>/net/tcp{,6}
  // list the sandbox's sockets); 0 = not spawned yet, every lookup fails. root_pid: the sandbox's
  // root process: owners are searched among its descendants first and ancestors stop there
  // (0 = no root: owners are all processes in netns_pid's network namespace).
  //
  // Faster paths, both optional (DESIGN.md "Identity"): `socket_diag` finds the inode without
  // reading /proc/<netns_pid>/net/tcp; `connect_owners` names the process that connected it
  // (from the bypass monitor), which is taken as the owner when it still holds the socket, so
  // the fd tables of the other processes are not scanned. Without them, or when they do not
  // know the connection, the lookup is spec §6's procfs walk.
  IdentityResolver(pid_t netns_pid, pid_t root_pid,
                   std::shared_ptr<SocketDiag> socket_diag = nullptr,
                   std::shared_ptr<const ConnectOwners> connect_owners = nullptr)
      : netns_pid_(netns_pid),
        root_pid_(root_pid),
        socket_diag_(std::move(socket_diag)),
        connect_owners_(std::move(connect_owners)) {}
  IdentityResolver(const IdentityResolver&) = delete;
  IdentityResolver& operator=(const IdentityResolver&) = delete;

  // The process whose socket has local address `client` and remote address `server` (the
  // client end of a connection accepted on `server`). Fails closed: no such socket, no owner in
  // the sandbox, an unreadable exe, owners that disagree ("ambiguous shared socket ownership"),
  // or a binary whose content changed since first sight ("Binary integrity violation").
  Result<ProcessIdentity> identify(const asio::ip::tcp::endpoint& client,
                                   const asio::ip::tcp::endpoint& server);

  // Files actually read and hashed so far (a cache hit does not count).
  uint64_t hashes_computed() const { return hashes_computed_.load(std::memory_order_relaxed); }

 private:
  // What identifies a file's content without reading it (§6.6).
  struct Fingerprint {
    uint64_t dev = 0;
    uint64_t ino = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const Fingerprint&) const = default;
  };
  struct CacheEntry {
    Fingerprint fingerprint;
    Sha256Digest digest{};  // the hash first seen for this path: never replaced
  };

  Result<Sha256Digest> exe_digest(pid_t pid, const std::string& exe);

  pid_t netns_pid_;
  pid_t root_pid_;
  std::shared_ptr<SocketDiag> socket_diag_;
  std::shared_ptr<const ConnectOwners> connect_owners_;
  std::mutex mutex_;                                   // guards cache_
  std::unordered_map<std::string, CacheEntry> cache_;  // by exe path
  std::atomic<uint64_t> hashes_computed_{0};
};

}  // namespace openshell::runtime
