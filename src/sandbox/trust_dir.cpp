// TrustDir: create, sweep what SIGKILLed sandboxes left, remove.
#include "trust_dir.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>

namespace openshell::sandbox {
namespace {

constexpr std::string_view kParent = "/var/tmp";
constexpr std::string_view kPrefix = "openshell-sandbox-";

// The pid in "openshell-sandbox-<pid>-XXXXXX"; 0 for any other name (e.g. the older
// pid-less form, which is left alone).
pid_t owner_of(std::string_view name) {
  if (!name.starts_with(kPrefix)) return 0;
  name.remove_prefix(kPrefix.size());
  pid_t pid = 0;
  const auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), pid);
  if (error != std::errc() || end == name.data() || end == name.data() + name.size() ||
      *end != '-') {
    return 0;
  }
  return pid;
}

void sweep_orphans() {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(kParent, error)) {
    const std::string name = entry.path().filename().string();
    const pid_t owner = owner_of(name);
    if (owner <= 0 || owner == ::getpid()) continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != ::geteuid()) {
      continue;
    }
    // Alive (or not ours to signal): keep. A reused pid only delays the sweep.
    if (::kill(owner, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    std::filesystem::remove_all(entry.path(), ignored);
  }
}

}  // namespace

Result<TrustDir> TrustDir::create() {
  sweep_orphans();
  std::string path =
      std::string(kParent) + "/" + std::string(kPrefix) + std::to_string(::getpid()) + "-XXXXXX";
  if (::mkdtemp(path.data()) == nullptr) {
    return make_error(Errc::kSyscall, "mkdtemp " + path + ": " + std::strerror(errno));
  }
  TrustDir dir(path);
  // Traversable by the sandbox's user whatever its uid; it lists nothing secret (no CA key).
  if (::chmod(path.c_str(), 0755) != 0) {
    return make_error(Errc::kSyscall, "chmod " + path + ": " + std::strerror(errno));
  }
  return dir;
}

TrustDir::~TrustDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace openshell::sandbox
