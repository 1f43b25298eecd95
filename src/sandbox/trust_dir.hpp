// TrustDir: the private directory holding the interception CA and the combined bundle handed to a
// sandbox's child (never the CA key). It lives under /var/tmp, outside the /tmp and /run the
// child's mount namespace replaces, and is removed with its content when the sandbox ends.
#pragma once

#include <string>
#include <utility>

#include "openshell/core/result.hpp"

namespace openshell::sandbox {

class TrustDir {
 public:
  // Creates /var/tmp/openshell-sandbox-<pid>-XXXXXX, mode 0755 (the sandbox's user must reach
  // the bundle whatever its uid). First removes the directories of earlier sandboxes whose
  // openshell is gone without cleaning up (killed with SIGKILL): the pid in the name says whose
  // they are; only directories of our own uid are touched.
  static Result<TrustDir> create();

  TrustDir(TrustDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TrustDir& operator=(TrustDir&&) = delete;
  TrustDir(const TrustDir&) = delete;
  TrustDir& operator=(const TrustDir&) = delete;
  ~TrustDir();

  const std::string& path() const { return path_; }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  explicit TrustDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace openshell::sandbox
