// Resolving run_as_user / run_as_group (runtime-spec §4.1 adapted to a host).
#include "openshell/runtime/credentials.hpp"

#include <pwd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

using openshell::runtime::current_credentials;
using openshell::runtime::resolve_credentials;

TEST_CASE("a numeric user needs no passwd entry and gets no supplementary groups") {
  // 1500 is unlikely to exist; if it does, its passwd group is used instead.
  auto credentials = resolve_credentials("1500", "");
  REQUIRE(credentials.ok());
  CHECK(credentials->uid == 1500);
  CHECK(credentials->groups.empty());
  if (::getpwuid(1500) == nullptr) {
    CHECK(credentials->gid == 1500);
    CHECK(credentials->user == "1500");
    CHECK(credentials->home.empty());
  }
  auto with_group = resolve_credentials("1500", "1600");
  REQUIRE(with_group.ok());
  CHECK(with_group->gid == 1600);
}

TEST_CASE("no user at all means nobody:nogroup") {
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) return;  // a host without nobody: the error is tested below
  auto credentials = resolve_credentials("", "");
  REQUIRE(credentials.ok());
  CHECK(credentials->uid == nobody->pw_uid);
  CHECK(credentials->user == "nobody");
}

TEST_CASE("a named user keeps its primary group and memberships") {
  const passwd* daemon = ::getpwnam("daemon");
  if (daemon == nullptr) return;
  auto credentials = resolve_credentials("daemon", "");
  REQUIRE(credentials.ok());
  CHECK(credentials->uid == daemon->pw_uid);
  CHECK(credentials->gid == daemon->pw_gid);
  CHECK(std::find(credentials->groups.begin(), credentials->groups.end(), daemon->pw_gid) !=
        credentials->groups.end());
}

TEST_CASE("unknown names fail and say how to fix it") {
  auto user = resolve_credentials("openshell-no-such-user", "");
  REQUIRE_FALSE(user.ok());
  CHECK(user.error().message.find("does not exist") != std::string::npos);
  CHECK(user.error().message.find("numeric id") != std::string::npos);
  auto group = resolve_credentials("1500", "openshell-no-such-group");
  REQUIRE_FALSE(group.ok());
  CHECK(group.error().message.find("run_as_group") != std::string::npos);
}

TEST_CASE("root and the invalid id are refused") {
  CHECK_FALSE(resolve_credentials("0", "").ok());
  CHECK_FALSE(resolve_credentials("root", "").ok());
  CHECK_FALSE(resolve_credentials("1500", "0").ok());
  CHECK_FALSE(resolve_credentials("4294967295", "1").ok());
  CHECK_FALSE(resolve_credentials("-1", "").ok());  // not a number, not a name
}

TEST_CASE("the caller's own identity") {
  const auto self = current_credentials();
  CHECK(self.uid == ::getuid());
  CHECK(self.gid == ::getgid());
  CHECK_FALSE(self.user.empty());
}
