// Connection → socket inode → owning pids → exe, SHA-256 and ancestors, from procfs (§6).
#include "openshell/runtime/identity.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <unordered_set>
#include <utility>

#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {
namespace {

// An argv can be megabytes; identity only needs the start of it.
constexpr std::size_t kMaxCmdlineBytes = std::size_t{64} * 1024;
// /proc/<pid>/status and task children lists are small; this bounds a pathological one.
constexpr std::size_t kMaxProcTextBytes = std::size_t{64} * 1024;
// Hashing reads the exe in chunks of this size.
constexpr std::size_t kHashChunk = std::size_t{64} * 1024;
// Bounds the descendant walk (pid_max defaults to 4M, but a sandbox is a handful of processes).
constexpr std::size_t kMaxDescendants = 65'536;

constexpr std::string_view kDeletedSuffix = " (deleted)";

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using Dir = std::unique_ptr<DIR, DirCloser>;

std::string proc_path(pid_t pid, std::string_view rest) {
  std::string path = "/proc/" + std::to_string(pid);
  path += rest;
  return path;
}

// Up to `limit` bytes of a (proc) file; nullopt when it cannot be opened or read.
std::optional<std::string> read_text(const std::string& path, std::size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string text;
  char buffer[4096];
  while (text.size() < limit) {
    const ssize_t n = ::read(fd.get(), buffer, std::min(sizeof buffer, limit - text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
}

std::optional<std::string> read_link(const std::string& path) {
  std::string target(4096, '\0');
  const ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
  if (n < 0 || static_cast<std::size_t>(n) >= target.size()) return std::nullopt;
  target.resize(static_cast<std::size_t>(n));
  return target;
}

template <class T>
std::optional<T> parse_number(std::string_view text, int base = 10) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::vector<std::string_view> split_whitespace(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t pos = 0;
  while ((pos = text.find_first_not_of(" \t\n", pos)) != std::string_view::npos) {
    const std::size_t end = std::min(text.find_first_of(" \t\n", pos), text.size());
    words.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return words;
}

// The kernel prints each 32-bit word of an address with %08X of its in-memory value: the bytes
// are in network order in memory, so the text reads reversed on little-endian machines. Copying
// the parsed word back to memory restores the network order on any host.
std::optional<asio::ip::address> parse_hex_address(std::string_view hex) {
  if (hex.size() != 8 && hex.size() != 32) return std::nullopt;
  std::array<uint8_t, 16> bytes{};
  for (std::size_t word = 0; word < hex.size() / 8; ++word) {
    const auto value = parse_number<uint32_t>(hex.substr(word * 8, 8), 16);
    if (!value) return std::nullopt;
    std::memcpy(bytes.data() + word * 4, &*value, 4);
  }
  if (hex.size() == 8) {
    return asio::ip::address_v4(
        asio::ip::address_v4::bytes_type{bytes[0], bytes[1], bytes[2], bytes[3]});
  }
  return asio::ip::address_v6(bytes);
}

// IPv4-mapped IPv6 (a dual-stack socket talking IPv4) compared as IPv4 (§6.1).
asio::ip::tcp::endpoint normalized(const asio::ip::tcp::endpoint& endpoint) {
  const asio::ip::address address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return {asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()), endpoint.port()};
  }
  return endpoint;
}

// "ADDR:PORT", the port printed in host order.
std::optional<asio::ip::tcp::endpoint> parse_hex_endpoint(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto address = parse_hex_address(text.substr(0, colon));
  const auto port = parse_number<uint16_t>(text.substr(colon + 1), 16);
  if (!address || !port) return std::nullopt;
  return normalized({*address, *port});
}

std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint) {
  const asio::ip::address address = endpoint.address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

// (dev, inode) of a process's network namespace.
std::optional<std::pair<dev_t, ino_t>> netns_of(pid_t pid) {
  struct stat st {};
  if (::stat(proc_path(pid, "/ns/net").c_str(), &st) != 0) return std::nullopt;
  return std::pair{st.st_dev, st.st_ino};
}

// The PPid of §6.4, from /proc/<pid>/stat (the kernel formats it far faster than `status`):
// "pid (comm) state ppid ...", where comm may hold spaces and parentheses, so the fields are
// counted from the last ')'.
pid_t parent_of(pid_t pid) {
  const auto stat = read_text(proc_path(pid, "/stat"), kMaxProcTextBytes);
  if (!stat) return 0;
  const std::size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  const auto words = split_whitespace(std::string_view(*stat).substr(close + 1, 64));
  return words.size() < 2 ? 0 : parse_number<pid_t>(words[1]).value_or(0);
}

// Does any fd of `pid` point at `link` ("socket:[INODE]")? Unreadable fd tables (another user's
// process without CAP_SYS_PTRACE, a process that just exited) count as "no".
bool holds_socket(pid_t pid, std::string_view link) {
  const std::string dir_path = proc_path(pid, "/fd");
  Dir dir(::opendir(dir_path.c_str()));
  if (!dir) return false;
  char target[64];
  while (const dirent* entry = ::readdir(dir.get())) {
    if (entry->d_name[0] == '.') continue;
    const ssize_t n = ::readlinkat(::dirfd(dir.get()), entry->d_name, target, sizeof target);
    if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == link) return true;
  }
  return false;
}

std::vector<pid_t> numeric_entries(const std::string& path) {
  std::vector<pid_t> pids;
  Dir dir(::opendir(path.c_str()));
  if (!dir) return pids;
  while (const dirent* entry = ::readdir(dir.get())) {
    if (const auto pid = parse_number<pid_t>(entry->d_name)) pids.push_back(*pid);
  }
  return pids;
}

// `root` and its descendants, breadth first, through every thread's children list (a child
// forked by a non-main thread is listed under that thread only).
std::vector<pid_t> descendants(pid_t root) {
  std::vector<pid_t> found{root};
  std::unordered_set<pid_t> seen{root};
  for (std::size_t next = 0; next < found.size() && found.size() < kMaxDescendants; ++next) {
    const pid_t pid = found[next];
    for (const pid_t tid : numeric_entries(proc_path(pid, "/task"))) {
      const auto children = read_text(proc_path(pid, "/task/" + std::to_string(tid) + "/children"),
                                      kMaxProcTextBytes);
      if (!children) continue;
      for (const std::string_view word : split_whitespace(*children)) {
        const auto child = parse_number<pid_t>(word);
        if (child && seen.insert(*child).second) found.push_back(*child);
      }
    }
  }
  return found;
}

// " (deleted)" is stripped only when the suffixed name does not exist: a file may really be
// named that way (§6.3). Checked through the process's own root, which may differ from ours.
std::optional<std::string> exe_path(pid_t pid) {
  auto raw = read_link(proc_path(pid, "/exe"));
  if (!raw) return std::nullopt;
  if (raw->size() > kDeletedSuffix.size() && raw->ends_with(kDeletedSuffix)) {
    struct stat st {};
    if (::lstat(proc_path(pid, "/root" + *raw).c_str(), &st) != 0 && errno == ENOENT) {
      raw->resize(raw->size() - kDeletedSuffix.size());
    }
  }
  return raw;
}

std::vector<std::string> read_cmdline(pid_t pid) {
  std::vector<std::string> argv;
  const auto text = read_text(proc_path(pid, "/cmdline"), kMaxCmdlineBytes);
  if (!text) return argv;
  std::size_t pos = 0;
  while (pos < text->size()) {
    const std::size_t end = std::min(text->find('\0', pos), text->size());
    argv.emplace_back(*text, pos, end - pos);
    pos = end + 1;
  }
  return argv;
}

Result<Sha256Digest> sha256_of_fd(int fd) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return make_error(Errc::kInternal, "SHA-256: cannot initialise libcrypto digest");
  }
  std::vector<char> buffer(kHashChunk);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read");
    if (n == 0) break;
    if (EVP_DigestUpdate(context.get(), buffer.data(), static_cast<std::size_t>(n)) != 1) {
      return make_error(Errc::kInternal, "SHA-256: digest update failed");
    }
  }
  Sha256Digest digest{};
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(context.get(), digest.data(), &size) != 1 || size != digest.size()) {
    return make_error(Errc::kInternal, "SHA-256: digest final failed");
  }
  return digest;
}

}  // namespace

std::string sha256_hex(const Sha256Digest& digest) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  std::string hex;
  hex.reserve(digest.size() * 2);
  for (const uint8_t byte : digest) {
    hex += kDigits[byte >> 4];
    hex += kDigits[byte & 0xF];
  }
  return hex;
}

std::optional<ProcNetTcpRow> parse_proc_net_tcp_row(std::string_view line) {
  // "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ..."
  const std::vector<std::string_view> fields = split_whitespace(line);
  if (fields.size() < 10 || !fields[0].ends_with(':')) return std::nullopt;
  const auto local = parse_hex_endpoint(fields[1]);
  const auto remote = parse_hex_endpoint(fields[2]);
  const auto state = parse_number<uint8_t>(fields[3], 16);
  const auto inode = parse_number<uint64_t>(fields[9]);
  if (!local || !remote || !state || !inode) return std::nullopt;
  return ProcNetTcpRow{*local, *remote, *state, *inode};
}

Result<Sha256Digest> IdentityResolver::exe_digest(pid_t pid, const std::string& exe) {
  // Read the image the process runs, not whatever the path names now (it may be replaced).
  const std::string path = proc_path(pid, "/exe");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno("open " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno("fstat " + path);
  const Fingerprint fingerprint{
      static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
      static_cast<int64_t>(st.st_size),
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
      static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec};
  {
    std::lock_guard lock(mutex_);
    const auto cached = cache_.find(exe);
    if (cached != cache_.end() && cached->second.fingerprint == fingerprint) {
      return cached->second.digest;
    }
  }
  // Hash outside the lock: a large binary must not stall other lookups.
  auto digest = sha256_of_fd(fd.get());
  if (!digest) return make_error(digest.error().code, path + ": " + digest.error().message);
  hashes_computed_.fetch_add(1, std::memory_order_relaxed);

  std::lock_guard lock(mutex_);
  auto [entry, inserted] = cache_.try_emplace(exe, CacheEntry{fingerprint, *digest});
  if (inserted || entry->second.digest == *digest) {
    entry->second.fingerprint = fingerprint;  // same content (touched, copied): refresh
    return *digest;
  }
  // The first hash stays the golden one: the binary stays blocked for the sandbox's lifetime.
  return make_error(Errc::kPermission,
                    "Binary integrity violation: " + exe +
                        " hash changed (cached: " + sha256_hex(entry->second.digest) +
                        ", current: " + sha256_hex(*digest) + ")");
}

Result<ProcessIdentity> IdentityResolver::identify(const asio::ip::tcp::endpoint& client,
                                                   const asio::ip::tcp::endpoint& server) {
  if (netns_pid_ <= 0) {
    return make_error(Errc::kUnavailable, "entrypoint process not yet spawned");
  }
  const std::string tuple = endpoint_text(client) + " -> " + endpoint_text(server);

  // 1. Connection -> socket inode: the client end lists client as local, server as remote.
  const asio::ip::tcp::endpoint want_local = normalized(client);
  const asio::ip::tcp::endpoint want_remote = normalized(server);
  uint64_t inode = socket_diag_ ? socket_diag_->inode_of(client, server).value_or(0) : 0;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    if (inode != 0) break;
    std::ifstream file(proc_path(netns_pid_, table));
    std::string line;
    while (inode == 0 && std::getline(file, line)) {
      const auto row = parse_proc_net_tcp_row(line);
      // Any state with a live socket: a fast client may already be in FIN_WAIT after sending its
      // request and half-closing. TIME_WAIT rows have inode 0 and never match.
      if (row && row->inode != 0 && row->local == want_local && row->remote == want_remote) {
        inode = row->inode;
      }
    }
    if (inode != 0) break;
  }
  if (inode == 0) {
    return make_error(Errc::kNotFound, "no socket for " + tuple + " in /proc/" +
                                           std::to_string(netns_pid_) + "/net/tcp{,6}");
  }

  // 2. Inode -> pids: the sandbox root's descendants first; then every process in the sandbox's
  // network namespace (a daemon reparented away from the tree), never processes outside it.
  const std::string link = "socket:[" + std::to_string(inode) + "]";
  const auto netns = netns_of(netns_pid_);
  if (!netns) return Error::from_errno("stat /proc/" + std::to_string(netns_pid_) + "/ns/net");
  auto in_sandbox = [&netns](pid_t pid) { return netns_of(pid) == netns; };
  std::vector<pid_t> owners;
  if (connect_owners_) {
    const std::optional<pid_t> connector = connect_owners_->find(inode);
    if (connector && in_sandbox(*connector) && holds_socket(*connector, link)) {
      owners.push_back(*connector);
    }
  }
  if (owners.empty() && root_pid_ > 0) {
    for (const pid_t pid : descendants(root_pid_)) {
      if (holds_socket(pid, link)) owners.push_back(pid);
    }
  }
  if (owners.empty()) {
    for (const pid_t pid : numeric_entries("/proc")) {
      if (in_sandbox(pid) && holds_socket(pid, link)) owners.push_back(pid);
    }
  }
  if (owners.empty()) {
    return make_error(Errc::kNotFound,
                      "no process in the sandbox holds " + link + " (" + tuple + ")");
  }
  std::sort(owners.begin(), owners.end());

  // 3-6. Each owner's exe, hash, ancestors and cmdline; all owners must agree (§6.7).
  std::optional<ProcessIdentity> chosen;
  for (const pid_t pid : owners) {
    ProcessIdentity identity;
    identity.pid = pid;
    auto exe = exe_path(pid);
    if (!exe) return Error::from_errno("readlink /proc/" + std::to_string(pid) + "/exe");
    identity.exe = std::move(*exe);
    auto digest = exe_digest(pid, identity.exe);
    if (!digest) return digest.error();
    identity.exe_sha256 = *digest;
    identity.cmdline = read_cmdline(pid);

    std::vector<std::vector<std::string>> argvs{identity.cmdline};
    pid_t current = pid;
    for (std::size_t hop = 0; hop < kMaxAncestorHops && current != root_pid_ && current > 1;
         ++hop) {
      current = parent_of(current);
      if (current <= 0 || !in_sandbox(current)) break;
      auto ancestor_exe = exe_path(current);
      if (!ancestor_exe) continue;  // unreadable ancestors are skipped (§6.4)
      auto ancestor_digest = exe_digest(current, *ancestor_exe);
      if (!ancestor_digest) {
        if (ancestor_digest.error().code == Errc::kPermission) return ancestor_digest.error();
        continue;
      }
      identity.ancestors.push_back({current, std::move(*ancestor_exe), *ancestor_digest});
      argvs.push_back(read_cmdline(current));
    }

    std::set<std::string> exes{identity.exe};
    for (const AncestorIdentity& ancestor : identity.ancestors)
      exes.insert(ancestor.exe);
    for (const auto& argv : argvs) {
      for (const std::string& arg : argv) {
        if (!arg.starts_with('/') || exes.count(arg) != 0) continue;
        if (std::find(identity.cmdline_paths.begin(), identity.cmdline_paths.end(), arg) ==
            identity.cmdline_paths.end()) {
          identity.cmdline_paths.push_back(arg);
        }
      }
    }

    if (!chosen) {
      chosen = std::move(identity);
      continue;
    }
    auto ancestor_exes = [](const ProcessIdentity& p) {
      std::vector<std::string> paths;
      for (const AncestorIdentity& ancestor : p.ancestors)
        paths.push_back(ancestor.exe);
      return paths;
    };
    if (identity.exe != chosen->exe || identity.exe_sha256 != chosen->exe_sha256 ||
        ancestor_exes(identity) != ancestor_exes(*chosen) ||
        identity.cmdline_paths != chosen->cmdline_paths) {
      return make_error(Errc::kPermission, "ambiguous shared socket ownership: pid " +
                                               std::to_string(chosen->pid) + " (" + chosen->exe +
                                               ") and pid " + std::to_string(pid) + " (" +
                                               identity.exe + ") hold " + link);
    }
  }
  return std::move(*chosen);
}

}  // namespace openshell::runtime
