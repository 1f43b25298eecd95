// Correlation ids: one per connection, carried by every event of that connection (DESIGN.md
// "Events and logs"). Cheap enough to mint on every accept: one relaxed atomic add, no syscall.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace openshell::core {

// A 64-bit id shown as 16 lowercase hex digits. The high half starts as a random per-process
// prefix and the low half as a counter, so ids from the proxy and the runtime do not collide and
// ids of one process sort in creation order. Zero means "no id".
class CorrelationId {
 public:
  static constexpr std::size_t kTextSize = 16;

  constexpr CorrelationId() = default;
  constexpr explicit CorrelationId(uint64_t value) : value_(value) {}

  // A fresh id, unique within this process (and, after fork, within the child: the prefix is
  // redrawn there).
  static CorrelationId next();

  constexpr uint64_t value() const { return value_; }
  constexpr bool empty() const { return value_ == 0; }
  constexpr explicit operator bool() const { return value_ != 0; }

  // 16 hex digits; all zeros for an empty id.
  std::array<char, kTextSize> chars() const;
  std::string to_string() const;  // "" for an empty id
  void append_to(std::string& out) const;

  constexpr auto operator<=>(const CorrelationId&) const = default;

 private:
  uint64_t value_ = 0;
};

}  // namespace openshell::core
