// Who the sandboxed program runs as (runtime-spec §4.1, adapted to a host): a policy's
// run_as_user / run_as_group (numeric ids, or names from the passwd and group databases),
// resolved in the caller before the spawn, never in the child.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::runtime {

// The identity a root caller drops to when the policy names none.
inline constexpr std::string_view kDefaultSandboxUser = "nobody";
inline constexpr std::string_view kDefaultSandboxGroup = "nogroup";

struct Credentials {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups; empty for a numeric user
  std::string user;              // the passwd name, or the number when there is none
  std::string home;              // the passwd home directory; empty when there is none
  std::string shell;             // the passwd shell; empty when there is none
};

// Resolves `user` and `group` as a root caller drops to them. Empty `user`: kDefaultSandboxUser,
// and with it (when `group` is empty too) kDefaultSandboxGroup. Empty `group`: the user's
// primary group, or the uid's number for a numeric user without a passwd entry. Refuses root
// (uid or gid 0), the invalid id 4294967295 and unknown names, saying how to fix them.
Result<Credentials> resolve_credentials(std::string_view user, std::string_view group);

// The caller's own identity (rootless sandboxes keep it).
Credentials current_credentials();

}  // namespace openshell::runtime
