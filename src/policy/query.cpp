// Query-string parsing for L7 query matchers (spec §2.7): the decoded multimap rules match against.
// Anything ambiguous (bad %-escapes, invalid UTF-8) rejects the request instead of guessing.
#include <string>
#include <string_view>
#include <utility>

#include "openshell/policy/path_canon.hpp"

namespace openshell::policy {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF), so that two spellings
// of one character cannot slip past a matcher written for the other.
bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    unsigned char min_second = 0x80;
    unsigned char max_second = 0xBF;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) min_second = 0xA0;  // overlong
      if (lead == 0xED) max_second = 0x9F;  // UTF-16 surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) min_second = 0x90;  // overlong
      if (lead == 0xF4) max_second = 0x8F;  // past U+10FFFF
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      const unsigned char low = k == 1 ? min_second : 0x80;
      const unsigned char high = k == 1 ? max_second : 0xBF;
      if (c < low || c > high) return false;
    }
    i += length;
  }
  return true;
}

// application/x-www-form-urlencoded decoding of one key or value.
bool decode_component(std::string_view raw, std::string& out) {
  out.clear();
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c != '%') {
      out.push_back(c);
    } else {
      const int hi = i + 2 < raw.size() ? hex_digit(raw[i + 1]) : -1;
      const int lo = i + 2 < raw.size() ? hex_digit(raw[i + 2]) : -1;
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    }
  }
  return is_valid_utf8(out);
}

}  // namespace

bool parse_query(std::string_view raw_query, QueryParams& out) {
  out.clear();
  for (size_t start = 0; start <= raw_query.size();) {
    size_t end = raw_query.find('&', start);
    if (end == std::string_view::npos) end = raw_query.size();
    const std::string_view pair = raw_query.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    const size_t equals = pair.find('=');
    std::string key;
    std::string value;
    if (!decode_component(pair.substr(0, equals), key)) return false;
    if (equals != std::string_view::npos && !decode_component(pair.substr(equals + 1), value)) {
      return false;
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return true;
}

}  // namespace openshell::policy
