// Error helpers shared by every layer.
#include "openshell/core/result.hpp"

#include <cerrno>
#include <cstring>
#include <string>

namespace openshell {

std::string_view errc_name(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kNotFound:
      return "not found";
    case Errc::kIo:
      return "i/o error";
    case Errc::kSyscall:
      return "system call failed";
    case Errc::kParse:
      return "parse error";
    case Errc::kPolicy:
      return "policy error";
    case Errc::kUnavailable:
      return "unavailable";
    case Errc::kPermission:
      return "permission denied";
    case Errc::kTimeout:
      return "timed out";
    case Errc::kLimit:
      return "limit exceeded";
    case Errc::kInternal:
      return "internal error";
  }
  return "unknown error";
}

Error Error::from_errno(std::string_view call, int err) {
  std::string message(call);
  message += ": ";
  message += std::strerror(
      err);  // NOLINT(concurrency-mt-unsafe): glibc returns static strings for known errnos
  return Error{err == EACCES || err == EPERM ? Errc::kPermission : Errc::kSyscall,
               std::move(message)};
}

Error Error::from_errno(std::string_view call) {
  return from_errno(call, errno);
}

}  // namespace openshell
