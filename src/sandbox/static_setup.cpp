// The runtime half's inputs for `openshell sandbox`: static policy sections, credentials,
// directories and Landlock rules (the rules `openshell run` applies).
#include "openshell/sandbox/static_setup.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "openshell/policy/loader.hpp"
#include "openshell/runtime/sandbox_defaults.hpp"

namespace openshell::sandbox {

namespace rt = openshell::runtime;

std::string canonical_or_empty(const std::string& path) {
  std::error_code error;
  const auto canonical = std::filesystem::canonical(path, error);
  return error ? std::string() : canonical.string();
}

// Under a directory the mount namespace replaces, a path is not what the child would see.
std::optional<std::string> hidden_by_mounts(const std::string& path) {
  std::vector<std::string> dirs = rt::default_private_dirs();
  for (std::string& dir : rt::default_masked_dirs())
    dirs.push_back(std::move(dir));
  for (const std::string& dir : dirs) {
    if (path == dir || path.starts_with(dir + "/")) return dir;
  }
  return std::nullopt;
}

std::optional<std::string> read_policy_text(const std::string& file) {
  // The loader refuses documents over 4 MiB; one byte more lets it say so.
  constexpr size_t kMaxPolicyFileRead = (size_t{4} << 20) + 1;
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(kMaxPolicyFileRead, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return std::nullopt;
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

std::optional<StaticPolicy> load_static_policy(const std::string& file, const std::string& text,
                                               core::Logger& log) {
  StaticPolicy out;
  if (file.empty()) return out;
  const policy::LoadResult loaded = policy::load_policy(text);
  for (const auto& d : loaded.diagnostics) {
    std::string where = file;
    if (d.location.line > 0) where += fmt::format(":{}:{}", d.location.line, d.location.column);
    const std::string message = d.path.empty() ? d.message : d.path + ": " + d.message;
    if (d.severity == policy::Severity::kError) {
      log.error("{}: {}", where, message);
    } else {
      log.warn("{}: {}", where, message);
    }
  }
  if (!loaded.ok()) return std::nullopt;
  const policy::PolicyDocument& doc = *loaded.document;
  out.present = true;
  out.has_network_policies = !doc.network_policies.empty();
  out.filesystem = doc.filesystem;
  if (doc.landlock) out.compatibility = doc.landlock->compatibility;
  if (doc.process) {
    out.run_as_user = doc.process->run_as_user;
    out.run_as_group = doc.process->run_as_group;
  }
  return out;
}

Result<rt::Credentials> sandbox_credentials(const std::string& user_flag,
                                            const std::string& group_flag,
                                            const StaticPolicy& policy, bool rootless,
                                            const core::Logger& log) {
  const std::string user = !user_flag.empty() ? user_flag : policy.run_as_user;
  const std::string group = !group_flag.empty() ? group_flag : policy.run_as_group;
  if (!rootless) return rt::resolve_credentials(user, group);
  rt::Credentials self = rt::current_credentials();
  const auto names_self = [&](const std::string& who, uint32_t id, const std::string& name) {
    return who.empty() || who == std::to_string(id) || who == name;
  };
  if (!names_self(user, self.uid, self.user) || !names_self(group, self.gid, std::string())) {
    log.warn(
        "rootless: the sandbox runs as uid {} gid {} (the caller, the only ids its user "
        "namespace maps); run_as_user/run_as_group ({}:{}) cannot be honoured without root",
        self.uid, self.gid, user.empty() ? "-" : user, group.empty() ? "-" : group);
  }
  return self;
}

std::optional<Directories> working_directory(const std::string& workdir, core::Logger& log) {
  Directories out;
  if (!workdir.empty()) {
    out.workdir = canonical_or_empty(workdir);
    struct stat info {};
    if (out.workdir.empty() || ::stat(out.workdir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      log.error("--workdir {}: not an existing directory", workdir);
      return std::nullopt;
    }
  }
  out.cwd = out.workdir.empty() ? std::filesystem::current_path().string() : out.workdir;
  if (auto dir = hidden_by_mounts(out.cwd)) {
    log.error(
        "working directory {}: the sandbox gets its own {}, so it would not be there; use "
        "--workdir elsewhere",
        out.cwd, *dir);
    return std::nullopt;
  }
  return out;
}

rt::FilesystemRules filesystem_rules(const StaticPolicy& policy, const std::string& workdir,
                                     const std::string& ca_bundle,
                                     const std::vector<std::string>& devices) {
  rt::FilesystemRules rules;
  bool include_workdir = true;  // the default when no filesystem_policy says otherwise
  if (!policy.present) {
    rules = rt::restrictive_default_rules();
  } else {
    if (policy.filesystem) {
      rules.read_only = policy.filesystem->read_only;
      rules.read_write = policy.filesystem->read_write;
      include_workdir = policy.filesystem->include_workdir;
    }
    rules.compatibility = policy.compatibility == policy::LandlockCompatibility::kHardRequirement
                              ? rt::LandlockCompatibility::kHardRequirement
                              : rt::LandlockCompatibility::kBestEffort;
    rt::add_baseline_paths(rules);
  }
  if (include_workdir && !workdir.empty() && workdir != "/") {
    rt::add_path_once(rules, rules.read_write, workdir);
  }
  if (!ca_bundle.empty()) rt::add_path_once(rules, rules.read_only, ca_bundle);
  rules.devices = devices;
  return rules;
}

std::string home_for(const rt::Credentials& credentials, const std::string& workdir) {
  struct stat info {};
  if (!credentials.home.empty() && ::stat(credentials.home.c_str(), &info) == 0 &&
      S_ISDIR(info.st_mode)) {
    return credentials.home;
  }
  return workdir.empty() ? "/tmp" : workdir;
}

std::string shell_for(const rt::Credentials& credentials) {
  for (const std::string& shell : {credentials.shell, std::string("/bin/bash")}) {
    if (!shell.empty() && shell.find("nologin") == std::string::npos &&
        ::access(shell.c_str(), X_OK) == 0) {
      return shell;
    }
  }
  return "/bin/sh";
}

}  // namespace openshell::sandbox
