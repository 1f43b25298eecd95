// libFuzzer target for the policy layer's text primitives: request-target canonicalisation, query
// parsing, and glob/host/selector compile+match. Invariants and small oracles trap on violation.
#include <cstddef>
#include <cstdint>
#include <regex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "openshell/policy/glob.hpp"
#include "openshell/policy/host_pattern.hpp"
#include "openshell/policy/path_canon.hpp"

namespace {

using namespace openshell::policy;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

bool is_upper_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

// What every canonical path promises the policy engine (spec §2.7).
void check_canonical(std::string_view path, const CanonOptions& options) {
  require(!path.empty() && path.front() == '/');
  for (size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    require(c > 0x20 && c < 0x7F && c != '?' && c != '#');
    if (c == '%')
      require(i + 2 < path.size() && is_upper_hex(path[i + 1]) && is_upper_hex(path[i + 2]));
  }
  if (!options.allow_encoded_slash) require(path.find("%2F") == std::string_view::npos);
  if (options.strip_path_parameters) require(path.find(';') == std::string_view::npos);
  // No dot segments, and no empty segment but a trailing one.
  for (size_t start = 1; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(start, end - start);
    require(segment != "." && segment != "..");
    require(!segment.empty() || end == path.size());
    start = end + 1;
  }
}

void fuzz_canonicalize(std::string_view input) {
  const CanonOptions option_sets[] = {{false, true}, {true, true}, {false, false}, {true, false}};
  for (const CanonOptions& options : option_sets) {
    const auto result = canonicalize_target(input, options);
    if (std::holds_alternative<CanonError>(result)) {
      require(!canon_error_name(std::get<CanonError>(result)).empty());
      continue;
    }
    const auto& target = std::get<CanonicalTarget>(result);
    check_canonical(target.path, options);
    const size_t question = input.find('?');
    require(target.has_query == (question != std::string_view::npos));
    if (target.has_query) require(target.raw_query == input.substr(question + 1));
    // A canonical path is a fixed point (unless re-encoding pushed it past the length limit).
    if (target.path.size() <= kMaxPathLength) {
      const auto again = canonicalize_target(target.path, options);
      require(std::holds_alternative<CanonicalTarget>(again) &&
              std::get<CanonicalTarget>(again).path == target.path &&
              !std::get<CanonicalTarget>(again).has_query);
    }
    // Allowing %2F cannot change a path that had none.
    if (!options.allow_encoded_slash) {
      const auto relaxed =
          canonicalize_target(input, CanonOptions{true, options.strip_path_parameters});
      require(std::holds_alternative<CanonicalTarget>(relaxed) &&
              std::get<CanonicalTarget>(relaxed).path == target.path);
    }
    QueryParams params;
    if (target.has_query && parse_query(target.raw_query, params)) {
      size_t ampersands = 0;
      for (const char c : target.raw_query)
        ampersands += c == '&' ? 1 : 0;
      require(params.size() <= ampersands + 1);
    }
  }
}

void fuzz_query(std::string_view input) {
  QueryParams params{{"stale", "entry"}};
  if (!parse_query(input, params)) return;
  const bool plain = input.find_first_of("%+") == std::string_view::npos;
  for (const auto& [key, value] : params) {
    require(key != "stale" || value != "entry" || input.find("stale=entry") != std::string::npos);
    if (plain) {
      require(input.find(key) != std::string_view::npos);
      require(input.find(value) != std::string_view::npos);
    }
  }
}

bool in_alphabet(std::string_view text, std::string_view alphabet) {
  return text.find_first_not_of(alphabet) == std::string_view::npos;
}

// The spec's §1.9a translation of a glob into a regular expression, for patterns made only of
// literals, `*` and `?`, matched by std::regex as an independent oracle.
std::string oracle_regex(std::string_view pattern, char separator) {
  const std::string sep = separator == '.' ? "\\." : "/";
  const std::string not_sep = std::string("[^") + sep + "]";
  if (pattern == "**") return ".*";
  std::string re;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '*') {
      if (pattern[i] == '?') {
        re += not_sep;
      } else if (pattern[i] == '.') {
        re += "\\.";
      } else {
        re += pattern[i];
      }
      ++i;
      continue;
    }
    size_t run = 0;
    while (i + run < pattern.size() && pattern[i + run] == '*')
      ++run;
    const bool starts = i == 0 || pattern[i - 1] == separator;
    const bool at_end = i + run == pattern.size();
    const bool ends = at_end || pattern[i + run] == separator;
    i += run;
    if (run != 2 || !starts || !ends) {
      re += not_sep + "*";
    } else if (at_end) {
      re += ".*";  // `X/**`: the separator is already in the expression
    } else if (i == 2) {
      re += "(?:" + sep + "?|.*" + sep + ")";  // leading `**/`
      ++i;
    } else {
      re += "(?:|.*" + sep + ")";  // middle `/**/`; the first separator is already there
      ++i;
    }
  }
  return re;
}

void fuzz_globs(std::string_view pattern, std::string_view value) {
  (void)glob_warnings(pattern);
  const Glob path = Glob::compile(pattern, GlobDialect::kPath);
  const Glob query = Glob::compile(pattern, GlobDialect::kQuery);
  const bool path_match = path.matches(value);
  const bool query_match = query.matches(value);
  const Glob copy = path;
  require(copy.matches(value) == path_match);
  if (pattern == "**") require(path_match && query_match);
  // Without glob syntax a pattern is its own text.
  if (pattern.find_first_of("*?[{\\") == std::string_view::npos) {
    require(path_match == (pattern == value) && query_match == (pattern == value));
  }
  if (pattern.size() <= 24 && value.size() <= 48 && in_alphabet(pattern, "ab/.*?") &&
      in_alphabet(value, "ab/.")) {
    require(path_match ==
            std::regex_match(std::string(value), std::regex(oracle_regex(pattern, '/'))));
    require(query_match ==
            std::regex_match(std::string(value), std::regex(oracle_regex(pattern, '.'))));
  }

  const EndpointPathSelector selector = EndpointPathSelector::compile(pattern);
  require(selector.matches(pattern));
  (void)selector.matches(value);
  require(selector.specificity() >= 0 &&
          static_cast<size_t>(selector.specificity()) <= pattern.size());

  (void)validate_host_pattern(pattern);
  const HostPattern host = HostPattern::compile(pattern);
  const std::string lower = ascii_lowercase(value);
  const bool host_match = host.matches(lower);
  if (pattern.find_first_of("*?[{\\") == std::string_view::npos) {
    require(host_match ==
            (ascii_lowercase(pattern) == lower && lower.find('\0') == std::string::npos));
  }
  // `**.tail` is "one label" (`*.tail`) or "two or more" (`**.*.tail`).
  if (pattern.starts_with("**.") && pattern.size() < 256) {
    const HostPattern one = HostPattern::compile(pattern.substr(1));
    const HostPattern more = HostPattern::compile("**.*." + std::string(pattern.substr(3)));
    require(host_match == (one.matches(lower) || more.matches(lower)));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  fuzz_canonicalize(input);
  fuzz_query(input);
  // "pattern\nvalue"; without a newline the input is both.
  const size_t newline = input.find('\n');
  const std::string_view pattern = input.substr(0, newline);
  const std::string_view value =
      newline == std::string_view::npos ? input : input.substr(newline + 1);
  fuzz_globs(pattern, value);
  return 0;
}
