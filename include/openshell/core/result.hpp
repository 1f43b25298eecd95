// Result<T>: a value or an Error meant for a person. Errors cross layer boundaries as values,
// never as exceptions (STYLE.md "Errors").
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace openshell {

enum class Errc {
  kInvalidArgument,
  kNotFound,
  kIo,
  kSyscall,
  kParse,
  kPolicy,
  kUnavailable,
  kPermission,
  kTimeout,
  kLimit,
  kInternal,
};

std::string_view errc_name(Errc code);

struct Error {
  Errc code = Errc::kInternal;
  std::string message;

  // "CALL: strerror(err)", the form every syscall failure takes.
  static Error from_errno(std::string_view call, int err);
  static Error from_errno(std::string_view call);  // uses the current errno
};

// E is the failure type: Error by default; a layer with a richer failure (an SSRF denial, say)
// names its own.
template <class T, class E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(E error) : state_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(state_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(state_));
  }
  const E& error() const {
    assert(!ok());
    return std::get<1>(state_);
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, E> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error)
      : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace openshell
