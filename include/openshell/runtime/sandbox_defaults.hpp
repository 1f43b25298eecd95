// The paths a sandbox gets without being told (runtime-spec §2.4 and DESIGN.md "Network path"):
// the restrictive default filesystem policy, the baseline every policy is enriched with, and
// the directories the mount namespace replaces.
#pragma once

#include <string>
#include <vector>

#include "openshell/runtime/landlock.hpp"

namespace openshell::runtime {

// No policy at all: read-only /usr /lib /proc /dev/urandom /app /etc /var/log, read-write /tmp
// /dev/null, best_effort (the caller adds the workdir: include_workdir is true there).
FilesystemRules restrictive_default_rules();

// The proxy baseline: read-only /usr /lib /etc /app /var/log /proc /dev/urandom and read-write
// /tmp, each added only if it exists and neither list names it already.
void add_baseline_paths(FilesystemRules& rules);

// Appends `path` to `list` unless either list of `rules` has it already.
void add_path_once(FilesystemRules& rules, std::vector<std::string>& list, const std::string& path);

// Directories that get a fresh private tmpfs: /tmp (when it is a real directory).
std::vector<std::string> default_private_dirs();
// Directories masked by an empty read-only tmpfs, so host unix sockets in them are out of
// reach: /run and /var/run (each when it is a real directory, not a symlink to the other).
std::vector<std::string> default_masked_dirs();

}  // namespace openshell::runtime
