// The three glob dialects of spec §1.9. Each is compiled once at policy load and matched without
// allocating.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openshell::policy {

// Which character a `*` may not cross.
enum class GlobDialect {
  kPath,   // (a) rule paths, deny-rule paths, binary paths: '/' separates, `**` only as a component
  kQuery,  // (b) query values (and host labels): '.' separates; `**` alone matches anything
};

// A compiled glob of dialect (a) or (b). Anchored on the whole value, case-sensitive.
class Glob {
 public:
  // Never fails: a malformed class or brace degrades to literal characters, as the engine does.
  static Glob compile(std::string_view pattern, GlobDialect dialect);

  bool matches(std::string_view value) const;
  const std::string& pattern() const { return pattern_; }

  Glob(Glob&&) noexcept;
  Glob& operator=(Glob&&) noexcept;
  Glob(const Glob&);
  Glob& operator=(const Glob&);
  ~Glob();

 private:
  struct Program;
  Glob() = default;
  std::string pattern_;
  std::unique_ptr<Program> program_;
};

// Warnings for a pattern as written (unbalanced `[` or `{`); empty when well-formed.
std::vector<std::string> glob_warnings(std::string_view pattern);

// (c) The endpoint `path` selector (Rust `endpoint_path.rs`): "", "**", "/**" match anything;
// "X/**" matches X itself and everything under X/; otherwise a glob where `*` crosses '/'.
// An invalid glob matches its exact string only.
class EndpointPathSelector {
 public:
  static EndpointPathSelector compile(std::string_view selector);

  bool matches(std::string_view path) const;
  // Number of characters other than '*' (route specificity, spec §2.5.1).
  int specificity() const { return specificity_; }
  const std::string& selector() const { return selector_; }

  EndpointPathSelector(EndpointPathSelector&&) noexcept;
  EndpointPathSelector& operator=(EndpointPathSelector&&) noexcept;
  EndpointPathSelector(const EndpointPathSelector&);
  EndpointPathSelector& operator=(const EndpointPathSelector&);
  ~EndpointPathSelector();

 private:
  struct Program;
  EndpointPathSelector() = default;
  std::string selector_;
  int specificity_ = 0;
  std::unique_ptr<Program> program_;
};

}  // namespace openshell::policy
