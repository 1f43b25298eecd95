// UTF-8 validation and escaping for the JSON and text log renderers.
#include "escape.hpp"

#include <array>

namespace openshell::core::detail {
namespace {

constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                       '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
constexpr std::string_view kEllipsis = "...";

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

void append_hex_byte(std::string& out, std::string_view prefix, unsigned char byte) {
  out.append(prefix);
  out.push_back(kHex[byte >> 4]);
  out.push_back(kHex[byte & 0xf]);
}

// Bidirectional embedding/override/isolate controls (U+202A..U+202E, U+2066..U+2069): shown raw
// they reorder the rest of the line on a terminal ("Trojan Source").
bool is_bidi_control(std::string_view text, std::size_t pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 != 0xE2 || pos + 2 >= text.size()) return false;
  const auto b1 = static_cast<unsigned char>(text[pos + 1]);
  const auto b2 = static_cast<unsigned char>(text[pos + 2]);
  return (b1 == 0x80 && b2 >= 0xAA && b2 <= 0xAE) || (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9);
}

}  // namespace

std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char lead = at(0);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80;  // allowed range of the second byte
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // UTF-16 surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (pos + length > text.size()) return 0;
  if (at(1) < low || at(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (!is_continuation(at(i))) return 0;
  }
  return length;
}

void append_json_string(std::string& out, std::string_view text) {
  const bool truncated = text.size() > kMaxFieldBytes;
  const std::size_t end = truncated ? kMaxFieldBytes : text.size();
  out.push_back('"');
  std::size_t pos = 0;
  while (pos < end) {
    // Copy the longest run of bytes that need no escaping in one append.
    std::size_t run = pos;
    while (run < end) {
      const auto byte = static_cast<unsigned char>(text[run]);
      if (byte < 0x20 || byte >= 0x7F || byte == '"' || byte == '\\') break;
      ++run;
    }
    out.append(text.data() + pos, run - pos);
    pos = run;
    if (pos >= end) break;

    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte >= 0x80) {
      const std::size_t length = utf8_sequence_length(text.substr(0, end), pos);
      if (length == 0) {
        out.append("\\ufffd");
        ++pos;
      } else {
        out.append(text.data() + pos, length);
        pos += length;
      }
      continue;
    }
    switch (byte) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        append_hex_byte(out, "\\u00", byte);
        break;  // other C0 controls and DEL
    }
    ++pos;
  }
  if (truncated) out.append(kEllipsis);
  out.push_back('"');
}

void append_text_safe(std::string& out, std::string_view text) {
  const bool truncated = text.size() > kMaxFieldBytes;
  const std::size_t end = truncated ? kMaxFieldBytes : text.size();
  const std::string_view bounded = text.substr(0, end);
  std::size_t pos = 0;
  while (pos < end) {
    std::size_t run = pos;
    while (run < end) {
      const auto byte = static_cast<unsigned char>(text[run]);
      if (byte < 0x20 || byte >= 0x7F || byte == '\\') break;
      ++run;
    }
    out.append(text.data() + pos, run - pos);
    pos = run;
    if (pos >= end) break;

    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte == '\\') {
      out.append("\\\\");
      ++pos;
      continue;
    }
    if (byte < 0x80) {  // C0 control or DEL
      append_hex_byte(out, "\\x", byte);
      ++pos;
      continue;
    }
    const std::size_t length = utf8_sequence_length(bounded, pos);
    if (length == 0) {
      append_hex_byte(out, "\\x", byte);
      ++pos;
    } else if (length == 2 && byte == 0xC2 && static_cast<unsigned char>(text[pos + 1]) < 0xA0) {
      // C1 controls U+0080..U+009F: some terminals act on them (U+009B is CSI).
      append_hex_byte(out, "\\u00", static_cast<unsigned char>(text[pos + 1]));
      pos += 2;
    } else if (is_bidi_control(bounded, pos)) {
      const auto b1 = static_cast<unsigned char>(text[pos + 1]);
      const auto b2 = static_cast<unsigned char>(text[pos + 2]);
      // Code point = 0x2000 | (b1 & 0x3f) << 6 | (b2 & 0x3f): U+202A.. or U+2066..
      const auto code = static_cast<unsigned>(((b1 & 0x3Fu) << 6) | (b2 & 0x3Fu));
      out.append("\\u20");
      out.push_back(kHex[(code >> 4) & 0xf]);
      out.push_back(kHex[code & 0xf]);
      pos += 3;
    } else {
      out.append(text.data() + pos, length);
      pos += length;
    }
  }
  if (truncated) out.append(kEllipsis);
}

}  // namespace openshell::core::detail
