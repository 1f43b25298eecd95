// Default and baseline paths, checked against the host's filesystem when the sandbox starts.
#include "openshell/runtime/sandbox_defaults.hpp"

#include <sys/stat.h>

#include <algorithm>

namespace openshell::runtime {
namespace {

bool exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

// A directory that is not a symlink (a symlink would make us mount over its target).
bool real_directory(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool contains(const std::vector<std::string>& list, const std::string& path) {
  return std::find(list.begin(), list.end(), path) != list.end();
}

}  // namespace

FilesystemRules restrictive_default_rules() {
  FilesystemRules rules;
  rules.read_only = {"/usr", "/lib", "/proc", "/dev/urandom", "/app", "/etc", "/var/log"};
  rules.read_write = {"/tmp", "/dev/null"};
  rules.compatibility = LandlockCompatibility::kBestEffort;
  // The reference lists /app whether or not it exists; best_effort skips what is missing, but
  // a path that is not there is only noise in the warnings.
  std::erase_if(rules.read_only, [](const std::string& path) { return !exists(path); });
  std::erase_if(rules.read_write, [](const std::string& path) { return !exists(path); });
  return rules;
}

void add_path_once(FilesystemRules& rules, std::vector<std::string>& list,
                   const std::string& path) {
  if (!contains(rules.read_only, path) && !contains(rules.read_write, path)) list.push_back(path);
}

void add_baseline_paths(FilesystemRules& rules) {
  for (const char* path : {"/usr", "/lib", "/etc", "/app", "/var/log", "/proc", "/dev/urandom"}) {
    if (exists(path)) add_path_once(rules, rules.read_only, path);
  }
  if (exists("/tmp")) add_path_once(rules, rules.read_write, "/tmp");
}

std::vector<std::string> default_private_dirs() {
  std::vector<std::string> dirs;
  if (real_directory("/tmp")) dirs.emplace_back("/tmp");
  return dirs;
}

std::vector<std::string> default_masked_dirs() {
  std::vector<std::string> dirs;
  for (const char* dir : {"/run", "/var/run"}) {
    if (real_directory(dir)) dirs.emplace_back(dir);
  }
  return dirs;
}

}  // namespace openshell::runtime
