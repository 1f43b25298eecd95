// Request-target canonicalisation (spec §2.7) and query parsing. Applied before policy and before
// forwarding: the canonical path is what rules see and what goes upstream.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace openshell::policy {

enum class CanonError {
  kNullOrControlByte,
  kNonAscii,
  kFragmentInRequestTarget,
  kMalformedTarget,
  kPathTooLong,
  kEncodedSlashNotAllowed,
  kInvalidPercentEncoding,
  kTraversalAboveRoot,
  kResidualDotSegment,
};

// The reference's variant name ("TraversalAboveRoot"), as used by the test vectors.
std::string_view canon_error_name(CanonError error);

struct CanonOptions {
  bool allow_encoded_slash = false;
  bool strip_path_parameters = true;
};

struct CanonicalTarget {
  std::string path;       // canonical, re-encoded
  std::string raw_query;  // verbatim text after the first '?'
  bool has_query = false;
};

// Maximum request path length accepted (spec §8).
inline constexpr size_t kMaxPathLength = 4096;

std::variant<CanonicalTarget, CanonError> canonicalize_target(std::string_view target,
                                                              const CanonOptions& options);

// Decoded query multimap in request order: split on '&', skip empty pairs, '+' is a space,
// %HH decoded. Returns false (and leaves `out` unspecified) on bad percent-encoding or non-UTF-8.
using QueryParams = std::vector<std::pair<std::string, std::string>>;
bool parse_query(std::string_view raw_query, QueryParams& out);

}  // namespace openshell::policy
