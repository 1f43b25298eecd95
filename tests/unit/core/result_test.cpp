// Result<T> carries a value or a person-readable error.
#include <catch2/catch.hpp>

#include <cerrno>
#include <string>

#include "openshell/core/result.hpp"

using openshell::Errc;
using openshell::Error;
using openshell::Result;

TEST_CASE("Result holds a value or an error") {
  Result<int> good = 7;
  REQUIRE(good.ok());
  CHECK(*good == 7);

  Result<int> bad = openshell::make_error(Errc::kParse, "bad input");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::kParse);
  CHECK(bad.error().message == "bad input");
}

TEST_CASE("Result<void> defaults to success") {
  Result<void> done;
  CHECK(done.ok());
  Result<void> failed = Error{Errc::kIo, "disk"};
  CHECK_FALSE(failed.ok());
}

TEST_CASE("syscall errors name the call and the errno text") {
  const Error e = Error::from_errno("open", ENOENT);
  CHECK(e.message == "open: No such file or directory");
  CHECK(e.code == Errc::kSyscall);
  CHECK(Error::from_errno("bind", EACCES).code == Errc::kPermission);
}
