// What the runtime half of a sandbox takes from the policy and the caller: the static sections,
// the identity the child runs as, its directories and filesystem rules (runtime-spec §2.2/§2.4).
// Shared by `openshell run` and `openshell sandbox`; needs only policy and runtime, so it is built
// whenever the runtime is.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/policy/document.hpp"
#include "openshell/runtime/credentials.hpp"
#include "openshell/runtime/landlock.hpp"

namespace openshell::sandbox {

struct StaticPolicy {
  bool present = false;
  std::optional<policy::FilesystemPolicy> filesystem;
  policy::LandlockCompatibility compatibility = policy::LandlockCompatibility::kBestEffort;
  std::string run_as_user;
  std::string run_as_group;
  bool has_network_policies = false;  // for `run`, which says it leaves them to the proxy
};

// `text` is the content of `file` (empty file name: no policy). Every diagnostic is logged with
// its location; nullopt when the document has errors.
std::optional<StaticPolicy> load_static_policy(const std::string& file, const std::string& text,
                                               core::Logger& log);

// --user/--group over the policy's run_as_*; rootless: the caller itself (warns when that
// differs from what was asked).
Result<runtime::Credentials> sandbox_credentials(const std::string& user, const std::string& group,
                                                 const StaticPolicy& policy, bool rootless,
                                                 const core::Logger& log);

struct Directories {
  std::string workdir;  // --workdir, canonical; empty when not given
  std::string cwd;      // where the child starts
};
// Checks --workdir and that the child's cwd survives its mount namespace; errors are logged.
std::optional<Directories> working_directory(const std::string& workdir, core::Logger& log);

// The policy's lists (or the restrictive default), the baseline, the workdir when
// include_workdir says so, the CA bundle read-only and the PTY devices.
runtime::FilesystemRules filesystem_rules(const StaticPolicy& policy, const std::string& workdir,
                                          const std::string& ca_bundle,
                                          const std::vector<std::string>& devices);

std::string home_for(const runtime::Credentials& credentials, const std::string& workdir);
// The policy file's text, bounded by the loader's own limit (it refuses what is larger).
std::optional<std::string> read_policy_text(const std::string& file);
// The canonical path, or empty when it does not exist.
std::string canonical_or_empty(const std::string& path);
// The directory the sandbox's mount namespace replaces that `path` lies under, if any.
std::optional<std::string> hidden_by_mounts(const std::string& path);
std::string shell_for(const runtime::Credentials& credentials);

}  // namespace openshell::sandbox
