// Private to core: make untrusted strings (host names, paths, reasons) safe for a JSON string or a
// terminal line, and bound their size, so no event can break or forge a log line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace openshell::core::detail {

// Longest rendered value of one string field; longer ones end in "...". Every event field can
// carry peer-controlled text, and one log line must not become megabytes.
inline constexpr std::size_t kMaxFieldBytes = 8192;

// Length of the well-formed UTF-8 sequence starting at text[pos], or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF are not well-formed).
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos);

// Appends `text` as a quoted JSON string: escapes quotes, backslashes and controls, replaces
// ill-formed UTF-8 with U+FFFD.
void append_json_string(std::string& out, std::string_view text);

// Appends `text` for a human log line: C0/C1 controls, DEL, ill-formed bytes and bidi overrides
// become \xNN or \uNNNN escapes and backslashes are doubled, so a terminal never interprets them.
void append_text_safe(std::string& out, std::string_view text);

}  // namespace openshell::core::detail
