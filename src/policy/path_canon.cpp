// Request-target canonicalisation (spec §2.7): one path that both the policy and the upstream see.
// Each step closes a known ACL bypass: dot segments (also encoded), `;params`, `%2F`, `//`.
#include "openshell/policy/path_canon.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openshell::policy {
namespace {

// Stands for a decoded %2F kept inside its segment (allow_encoded_slash). Raw control bytes are
// rejected before decoding, so input can never produce it any other way.
constexpr char kEncodedSlash = '\x01';
constexpr char kHexDigits[] = "0123456789ABCDEF";

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7F;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 pchar bytes emitted as themselves: unreserved, sub-delims, ':' and '@'.
bool is_literal_pchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("-._~!$&'()*+,;=:@").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_scheme_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.';
}

bool is_authority_char(unsigned char c) {
  return is_literal_pchar(c) || c == '%' || c == '[' || c == ']';
}

// The path of an absolute-form target (`scheme://authority/path`), "/" when it has none, or
// nullopt when `target` is not absolute-form. Origin-form targets may embed "://" in a segment,
// so only a target that starts with a scheme qualifies.
std::optional<std::string_view> absolute_form_path(std::string_view target) {
  const size_t colon = target.find("://");
  if (colon == 0 || colon == std::string_view::npos) return std::nullopt;
  const std::string_view scheme = target.substr(0, colon);
  if (!((scheme[0] >= 'a' && scheme[0] <= 'z') || (scheme[0] >= 'A' && scheme[0] <= 'Z'))) {
    return std::nullopt;
  }
  for (const char c : scheme) {
    if (!is_scheme_char(c)) return std::nullopt;
  }
  const std::string_view rest = target.substr(colon + 3);
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  if (authority.empty()) return std::nullopt;
  for (const char c : authority) {
    if (!is_authority_char(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
}

// Percent-decodes the whole path; an allowed %2F becomes kEncodedSlash so that splitting on '/'
// cannot mistake it for a separator.
std::optional<CanonError> percent_decode(std::string_view raw, bool allow_encoded_slash,
                                         std::string& out) {
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out.push_back(raw[i]);
      continue;
    }
    const int hi = i + 2 < raw.size() ? hex_value(raw[i + 1]) : -1;
    const int lo = i + 2 < raw.size() ? hex_value(raw[i + 2]) : -1;
    if (hi < 0 || lo < 0) return CanonError::kInvalidPercentEncoding;
    const auto byte = static_cast<unsigned char>(hi * 16 + lo);
    if (byte == '/') {
      if (!allow_encoded_slash) return CanonError::kEncodedSlashNotAllowed;
      out.push_back(kEncodedSlash);
    } else if (is_control(byte)) {
      return CanonError::kNullOrControlByte;
    } else {
      out.push_back(static_cast<char>(byte));
    }
    i += 2;
  }
  return std::nullopt;
}

bool is_dot_segment(std::string_view part) {
  return part == "." || part == "..";
}

// A `.`/`..` hidden behind a kept %2F is still a dot segment to whoever decodes it upstream.
bool has_dot_part(std::string_view segment) {
  for (size_t start = 0; start <= segment.size();) {
    size_t end = segment.find(kEncodedSlash, start);
    if (end == std::string_view::npos) end = segment.size();
    if (is_dot_segment(segment.substr(start, end - start))) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

std::string_view canon_error_name(CanonError error) {
  switch (error) {
    case CanonError::kNullOrControlByte:
      return "NullOrControlByte";
    case CanonError::kNonAscii:
      return "NonAscii";
    case CanonError::kFragmentInRequestTarget:
      return "FragmentInRequestTarget";
    case CanonError::kMalformedTarget:
      return "MalformedTarget";
    case CanonError::kPathTooLong:
      return "PathTooLong";
    case CanonError::kEncodedSlashNotAllowed:
      return "EncodedSlashNotAllowed";
    case CanonError::kInvalidPercentEncoding:
      return "InvalidPercentEncoding";
    case CanonError::kTraversalAboveRoot:
      return "TraversalAboveRoot";
    case CanonError::kResidualDotSegment:
      return "ResidualDotSegment";
  }
  return "Unknown";
}

std::variant<CanonicalTarget, CanonError> canonicalize_target(std::string_view target,
                                                              const CanonOptions& options) {
  for (const char ch : target) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_control(c)) return CanonError::kNullOrControlByte;
    if (c >= 0x80) return CanonError::kNonAscii;
  }
  if (target.find('#') != std::string_view::npos) return CanonError::kFragmentInRequestTarget;

  CanonicalTarget result;
  std::string_view raw_path = target;
  if (const size_t question = target.find('?'); question != std::string_view::npos) {
    raw_path = target.substr(0, question);
    result.raw_query = std::string(target.substr(question + 1));
    result.has_query = true;
  }
  if (const auto path = absolute_form_path(raw_path)) raw_path = *path;
  if (raw_path.empty()) raw_path = "/";
  if (raw_path.front() != '/') return CanonError::kMalformedTarget;
  if (raw_path.size() > kMaxPathLength) return CanonError::kPathTooLong;

  std::string decoded;
  if (const auto error = percent_decode(raw_path, options.allow_encoded_slash, decoded)) {
    return *error;
  }

  // RFC 3986 §5.2.4 over the segments after the leading '/'. Parameters go first, so that `..;`
  // is resolved as the `..` the upstream will see rather than smuggled past the root guard.
  const std::string_view all(decoded);
  std::vector<std::string_view> kept;
  for (size_t start = 1; start <= all.size();) {
    size_t end = all.find('/', start);
    if (end == std::string_view::npos) end = all.size();
    const bool last = end == all.size();
    std::string_view segment = all.substr(start, end - start);
    start = end + 1;
    if (options.strip_path_parameters) segment = segment.substr(0, segment.find(';'));
    if (segment == "..") {
      if (kept.empty()) return CanonError::kTraversalAboveRoot;
      kept.pop_back();
    }
    if (is_dot_segment(segment) || (segment.empty() && !last)) {
      // A final `.`/`..` leaves a directory: keep the trailing slash.
      if (last) kept.emplace_back();
      continue;
    }
    kept.push_back(segment);
  }
  for (const std::string_view segment : kept) {
    if (has_dot_part(segment)) return CanonError::kResidualDotSegment;
  }

  result.path.reserve(decoded.size() + 8);
  result.path.push_back('/');
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i > 0) result.path.push_back('/');
    for (const char ch : kept[i]) {
      const auto c = static_cast<unsigned char>(ch);
      if (ch == kEncodedSlash) {
        result.path += "%2F";
      } else if (is_literal_pchar(c)) {
        result.path.push_back(ch);
      } else {
        result.path.push_back('%');
        result.path.push_back(kHexDigits[c >> 4]);
        result.path.push_back(kHexDigits[c & 0x0F]);
      }
    }
  }
  return result;
}

}  // namespace openshell::policy
