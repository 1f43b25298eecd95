// passwd/group lookups for the sandbox identity; NSS is only ever called here, in the caller.
#include "openshell/runtime/credentials.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <optional>

namespace openshell::runtime {
namespace {

// (uid_t)-1 means "no change" to setresuid: never an identity.
constexpr uint32_t kInvalidId = 4294967295u;
// Buffers for the reentrant NSS calls; ERANGE doubles them up to this bound.
constexpr size_t kMaxNssBuffer = size_t{1} << 20;

std::optional<uint32_t> parse_id(std::string_view text) {
  uint32_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

struct PasswdEntry {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string name;
  std::string home;
  std::string shell;
};

template <class Lookup>
std::optional<PasswdEntry> passwd_lookup(Lookup lookup) {
  for (size_t size = 4096; size <= kMaxNssBuffer; size *= 2) {
    std::string buffer(size, '\0');
    passwd entry{};
    passwd* found = nullptr;
    const int err = lookup(&entry, buffer.data(), buffer.size(), &found);
    if (err == ERANGE) continue;
    if (err != 0 || found == nullptr) return std::nullopt;
    return PasswdEntry{entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir, entry.pw_shell};
  }
  return std::nullopt;
}

std::optional<PasswdEntry> passwd_by_name(const std::string& name) {
  return passwd_lookup([&](passwd* e, char* b, size_t n, passwd** r) {
    return ::getpwnam_r(name.c_str(), e, b, n, r);
  });
}

std::optional<PasswdEntry> passwd_by_uid(uint32_t uid) {
  return passwd_lookup(
      [&](passwd* e, char* b, size_t n, passwd** r) { return ::getpwuid_r(uid, e, b, n, r); });
}

std::optional<uint32_t> group_by_name(const std::string& name) {
  for (size_t size = 4096; size <= kMaxNssBuffer; size *= 2) {
    std::string buffer(size, '\0');
    group entry{};
    group* found = nullptr;
    const int err = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (err == ERANGE) continue;
    if (err != 0 || found == nullptr) return std::nullopt;
    return entry.gr_gid;
  }
  return std::nullopt;
}

std::vector<uint32_t> supplementary_groups(const std::string& name, uint32_t gid) {
  int count = 32;
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::vector<gid_t> list(static_cast<size_t>(count));
    if (::getgrouplist(name.c_str(), gid, list.data(), &count) >= 0) {
      list.resize(static_cast<size_t>(count));
      return {list.begin(), list.end()};
    }
  }
  return {gid};
}

Error unknown_user(std::string_view user) {
  return make_error(
      Errc::kNotFound,
      "run_as_user '" + std::string(user) +
          "' does not exist on this host: create it (e.g. `useradd --system --no-create-home " +
          std::string(user) +
          "`) or put a numeric id in the policy's process.run_as_user (or "
          "--user)");
}

Error unknown_group(std::string_view group) {
  return make_error(Errc::kNotFound,
                    "run_as_group '" + std::string(group) +
                        "' does not exist on this host: create it (e.g. `groupadd --system " +
                        std::string(group) +
                        "`) or put a numeric id in the policy's process.run_as_group (or --group)");
}

}  // namespace

Result<Credentials> resolve_credentials(std::string_view user_text, std::string_view group_text) {
  const bool defaulted = user_text.empty();
  const std::string user(defaulted ? kDefaultSandboxUser : user_text);
  std::string group(group_text);
  if (defaulted && group.empty()) group = kDefaultSandboxGroup;

  Credentials credentials;
  std::optional<PasswdEntry> entry;
  if (const auto number = parse_id(user)) {
    credentials.uid = *number;
    entry = passwd_by_uid(*number);
    credentials.gid = entry ? entry->gid : *number;
  } else {
    entry = passwd_by_name(user);
    if (!entry) return unknown_user(user);
    credentials.uid = entry->uid;
    credentials.gid = entry->gid;
  }
  credentials.user = entry ? entry->name : user;
  if (entry) {
    credentials.home = entry->home;
    credentials.shell = entry->shell;
  }
  if (!group.empty()) {
    if (const auto number = parse_id(group)) {
      credentials.gid = *number;
    } else if (const auto gid = group_by_name(group)) {
      credentials.gid = *gid;
    } else {
      return unknown_group(group);
    }
  }
  // A named user keeps its group memberships; a bare number gets none (root's are cleared).
  if (entry && !parse_id(user))
    credentials.groups = supplementary_groups(entry->name, credentials.gid);

  if (credentials.uid == 0 || credentials.gid == 0) {
    return make_error(Errc::kPermission,
                      "refusing to run the sandbox as root (uid or gid 0): name an unprivileged "
                      "user in the policy's process.run_as_user / run_as_group");
  }
  if (credentials.uid == kInvalidId || credentials.gid == kInvalidId) {
    return make_error(Errc::kInvalidArgument, "4294967295 is not a valid user or group id");
  }
  return credentials;
}

Credentials current_credentials() {
  Credentials credentials;
  credentials.uid = ::getuid();
  credentials.gid = ::getgid();
  const auto entry = passwd_by_uid(credentials.uid);
  credentials.user = entry ? entry->name : std::to_string(credentials.uid);
  if (entry) {
    credentials.home = entry->home;
    credentials.shell = entry->shell;
  }
  return credentials;
}

}  // namespace openshell::runtime
