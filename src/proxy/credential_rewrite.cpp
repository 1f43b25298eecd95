// Placeholder → secret in the request line and headers (spec §4.3), the redacted target policy
// sees (§4.4), and the fail-closed final scan (§4.5). Everything that leaves here as an error
// names a key at most, never a secret.
#include "openshell/proxy/credential_rewrite.hpp"

#include <array>
#include <cctype>
#include <optional>

namespace openshell::proxy {

namespace {

constexpr std::string_view kHex = "0123456789ABCDEF";

bool unreserved(unsigned char c) {
  return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~';
}

// pchar minus pct-encoded (RFC 3986 §3.3): unreserved, sub-delims, ':' and '@'.
bool pchar(unsigned char c) {
  return unreserved(c) ||
         std::string_view("!$&'()*+,;=:@").find(static_cast<char>(c)) != std::string_view::npos;
}

void encode_byte(unsigned char c, std::string& out) {
  out += '%';
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

void encode_pchar(std::string_view text, std::string& out, bool keep_brackets) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (pchar(c) || (keep_brackets && (c == '[' || c == ']'))) {
      out += ch;
    } else {
      encode_byte(c, out);
    }
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool alias_prefix_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '~' ||
         c == '-';
}

// One placeholder occurrence: canonical `openshell:resolve:env:K`, or the provider-shaped alias
// `<prefix>-OPENSHELL-RESOLVE-ENV-K` (spec §4.2). `key` empty: a marker without a valid key.
struct Token {
  size_t start = std::string_view::npos;
  size_t end = 0;
  std::string_view key;
};

std::string_view key_after(std::string_view text, size_t from, size_t& end) {
  end = from;
  while (end < text.size() && is_credential_key_char(text[end]))
    ++end;
  const std::string_view key = text.substr(from, end - from);
  return valid_credential_key(key) ? key : std::string_view{};
}

// The earliest placeholder at or after `from`.
Token find_token(std::string_view text, size_t from) {
  Token token;
  const size_t canonical = text.find(kPlaceholderPrefix, from);
  const size_t alias = text.find(kAliasMarker, from);
  if (canonical != std::string_view::npos) {
    token.start = canonical;
    token.key = key_after(text, canonical + kPlaceholderPrefix.size(), token.end);
  }
  if (alias != std::string_view::npos) {
    size_t start = alias;
    while (start > from && alias_prefix_char(text[start - 1]))
      --start;
    if (start < token.start) {
      token.start = start;
      token.key = key_after(text, alias + kAliasMarker.size(), token.end);
    }
  }
  return token;
}

bool has_placeholder(std::string_view text) {
  return find_token(text, 0).start != std::string_view::npos;
}

// Whether all of `text` is one placeholder.
bool is_whole_placeholder(std::string_view text) {
  const Token token = find_token(text, 0);
  return token.start == 0 && !token.key.empty() && token.end == text.size();
}

// Replaces placeholders by [CREDENTIAL] (no resolution).
std::string redact_text(std::string_view text) {
  std::string out;
  size_t at = 0;
  for (;;) {
    const Token token = find_token(text, at);
    if (token.start == std::string_view::npos) break;
    out.append(text.substr(at, token.start - at));
    out += kRedactedCredential;
    at = token.end;
  }
  out.append(text.substr(at));
  return out;
}

// A secret that may stand in a path segment: it cannot add or climb segments, nor end the path.
bool safe_path_secret(std::string_view secret) {
  if (secret == ".." || secret == ".") return false;
  return secret.find_first_of(std::string_view("/\\\0\r\n?#", 7)) == std::string_view::npos;
}

constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (const char c : text) {
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return std::nullopt;  // data after padding
    const size_t value = kBase64.find(c);
    if (value == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  if (padding > 2) return std::nullopt;
  return out;
}

std::string base64_encode(std::string_view data) {
  std::string out;
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(data[i]) << 16) |
                       (static_cast<unsigned char>(data[i + 1]) << 8) |
                       static_cast<unsigned char>(data[i + 2]);
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += kBase64[v & 63];
  }
  if (i + 1 == data.size()) {
    const uint32_t v = static_cast<unsigned char>(data[i]) << 16;
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    const uint32_t v = (static_cast<unsigned char>(data[i]) << 16) |
                       (static_cast<unsigned char>(data[i + 1]) << 8);
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Whole value, `<scheme> <placeholder>`, or Basic credentials (spec §4.3 header rows).
bool rewrite_header(HeaderField& field, const CredentialScope& scope, CredentialOutcome& outcome) {
  const std::string& value = field.value;
  // Basic credentials hide the placeholder in base64.
  const bool basic = ascii_iequals(field.name, "authorization") && value.size() > 6 &&
                     ascii_iequals(std::string_view(value).substr(0, 6), "basic ");
  if (!basic && !has_placeholder(value)) return true;
  if (is_whole_placeholder(value)) {
    std::string out;
    if (!substitute_placeholders(value, scope, out, outcome)) return false;
    wipe(field.value);
    field.value = std::move(out);
    return true;
  }
  const size_t space = value.find_first_of(" \t");
  if (space == std::string::npos) return true;  // left for the final scan
  const std::string_view scheme = std::string_view(value).substr(0, space);
  size_t rest_at = value.find_first_not_of(" \t", space);
  if (rest_at == std::string::npos) return true;
  const std::string_view rest = std::string_view(value).substr(rest_at);
  if (is_whole_placeholder(rest)) {
    std::string out(value.substr(0, rest_at));
    if (!substitute_placeholders(rest, scope, out, outcome)) return false;
    wipe(field.value);
    field.value = std::move(out);
    return true;
  }
  if (ascii_iequals(field.name, "authorization") && ascii_iequals(scheme, "basic")) {
    std::optional<std::string> decoded = base64_decode(rest);
    if (decoded && has_placeholder(*decoded)) {
      std::string replaced;
      const bool ok = substitute_placeholders(*decoded, scope, replaced, outcome);
      if (ok) {
        std::string out(value.substr(0, rest_at));
        out += base64_encode(replaced);
        wipe(field.value);
        field.value = std::move(out);
      }
      wipe(replaced);
      return ok;
    }
  }
  return true;
}

// Walks `path` segment by segment: a segment holding a placeholder once percent-decoded goes
// through `rewrite(decoded, out)`, any other is copied as it is. False when `rewrite` fails.
template <typename Rewrite>
bool map_placeholder_segments(std::string_view path, std::string& out, Rewrite&& rewrite) {
  size_t at = 0;
  for (;;) {
    const size_t slash = path.find('/', at);
    const std::string_view segment =
        path.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
    std::string decoded;
    if (percent_decode(segment, decoded, false) && has_placeholder(decoded)) {
      if (!rewrite(decoded, out)) return false;
    } else {
      out.append(segment);
    }
    if (slash == std::string_view::npos) break;
    out += '/';
    at = slash + 1;
  }
  return true;
}

// One path (without query): segment by segment, decoded, substituted, re-encoded as pchar.
bool rewrite_path(std::string_view path, const CredentialScope& scope, std::string& out,
                  CredentialOutcome& outcome) {
  return map_placeholder_segments(path, out, [&](const std::string& decoded, std::string& into) {
    std::string replaced;
    // Resolve piecewise so each secret is validated before it joins the segment.
    const std::string_view view(decoded);
    size_t cursor = 0;
    for (;;) {
      const Token token = find_token(view, cursor);
      replaced.append(view.substr(cursor, token.start == std::string_view::npos
                                              ? std::string_view::npos
                                              : token.start - cursor));
      if (token.start == std::string_view::npos) break;
      std::string secret;
      if (!substitute_placeholders(view.substr(token.start, token.end - token.start), scope, secret,
                                   outcome)) {
        wipe(replaced);
        return false;
      }
      if (!safe_path_secret(secret)) {
        wipe(secret);
        wipe(replaced);
        outcome.failure = CredentialFailure::kUnavailable;
        outcome.key = std::string(token.key);
        return false;
      }
      replaced += secret;
      wipe(secret);
      cursor = token.end;
    }
    encode_pchar(replaced, into, false);
    wipe(replaced);
    return true;
  });
}

// name=value pairs: a value holding a placeholder is decoded, substituted, re-encoded.
bool rewrite_query(std::string_view query, const CredentialScope& scope, std::string& out,
                   std::string& redacted, CredentialOutcome& outcome) {
  size_t at = 0;
  bool first = true;
  for (;;) {
    const size_t amp = query.find('&', at);
    const std::string_view pair =
        query.substr(at, amp == std::string_view::npos ? std::string_view::npos : amp - at);
    if (!first) {
      out += '&';
      redacted += '&';
    }
    first = false;
    const size_t eq = pair.find('=');
    std::string decoded;
    if (eq != std::string_view::npos && percent_decode(pair.substr(eq + 1), decoded, false) &&
        has_placeholder(decoded)) {
      std::string replaced;
      if (!substitute_placeholders(decoded, scope, replaced, outcome)) return false;
      out.append(pair.substr(0, eq + 1));
      percent_encode_unreserved(replaced, out, false);
      wipe(replaced);
      redacted.append(pair.substr(0, eq + 1));
      redacted += kRedactedCredential;
    } else {
      out.append(pair);
      redacted.append(pair);
    }
    if (amp == std::string_view::npos) break;
    at = amp + 1;
  }
  return true;
}

}  // namespace

bool percent_decode(std::string_view text, std::string& out, bool plus_is_space) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return false;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

void percent_encode_unreserved(std::string_view text, std::string& out, bool space_as_plus) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (unreserved(c)) {
      out += ch;
    } else if (c == ' ' && space_as_plus) {
      out += '+';
    } else {
      encode_byte(c, out);
    }
  }
}

bool substitute_placeholders(std::string_view text, const CredentialScope& scope, std::string& out,
                             CredentialOutcome& outcome, SecretEscape escape) {
  size_t at = 0;
  for (;;) {
    const Token token = find_token(text, at);
    if (token.start == std::string_view::npos) break;
    out.append(text.substr(at, token.start - at));
    if (token.key.empty()) {
      outcome.failure = CredentialFailure::kUnavailable;
      outcome.key.clear();
      return false;
    }
    const std::string_view key = token.key;
    std::string_view secret;
    const CredentialAccess access =
        scope.set == nullptr ? CredentialAccess::kUnknown
                             : scope.set->resolve(key, scope.host, scope.port, scope.path, secret);
    if (access != CredentialAccess::kGranted) {
      outcome.failure = access == CredentialAccess::kEndpointMismatch
                            ? CredentialFailure::kEndpointMismatch
                            : CredentialFailure::kUnavailable;
      outcome.key = std::string(key);
      return false;
    }
    if (escape != nullptr) {
      escape(secret, out);
    } else {
      out.append(secret);
    }
    outcome.substituted = true;
    at = token.end;
  }
  out.append(text.substr(at));
  return true;
}

bool contains_credential_marker(std::string_view text) {
  // Case-insensitive, with ':' also matching %3A/%3a; no allocation (runs on every header).
  static constexpr std::string_view kLower = "openshell:resolve:env:";
  for (size_t start = 0; start < text.size(); ++start) {
    if ((text[start] | 0x20) != 'o') continue;
    size_t at = start;
    size_t matched = 0;
    while (matched < kLower.size() && at < text.size()) {
      const char want = kLower[matched];
      if (want == ':' && text[at] == '%' && at + 2 < text.size() && text[at + 1] == '3' &&
          (text[at + 2] | 0x20) == 'a') {
        at += 3;
      } else if (static_cast<char>(std::tolower(static_cast<unsigned char>(text[at]))) == want) {
        ++at;
      } else {
        break;
      }
      ++matched;
    }
    if (matched == kLower.size()) return true;
  }
  // The provider-shaped alias, any case.
  static constexpr std::string_view kAliasLower = "-openshell-resolve-env-";
  for (size_t start = 0; start + kAliasLower.size() <= text.size(); ++start) {
    size_t i = 0;
    while (i < kAliasLower.size() &&
           std::tolower(static_cast<unsigned char>(text[start + i])) == kAliasLower[i])
      ++i;
    if (i == kAliasLower.size()) return true;
  }
  return false;
}

std::string redact_target(std::string_view target) {
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  std::string out;
  map_placeholder_segments(path, out, [](const std::string& decoded, std::string& into) {
    encode_pchar(redact_text(decoded), into, true);
    return true;
  });
  if (question == std::string_view::npos) return out;
  out += '?';
  const std::string_view query = target.substr(question + 1);
  // Redaction of the query needs no secrets: resolve nothing, keep the redacted side only.
  size_t q = 0;
  bool first = true;
  for (;;) {
    const size_t amp = query.find('&', q);
    const std::string_view pair =
        query.substr(q, amp == std::string_view::npos ? std::string_view::npos : amp - q);
    if (!first) out += '&';
    first = false;
    const size_t eq = pair.find('=');
    std::string decoded;
    if (eq != std::string_view::npos && percent_decode(pair.substr(eq + 1), decoded, false) &&
        has_placeholder(decoded)) {
      out.append(pair.substr(0, eq + 1));
      out += kRedactedCredential;
    } else {
      out.append(pair);
    }
    if (amp == std::string_view::npos) break;
    q = amp + 1;
  }
  return out;
}

namespace {

bool rewrite_head(std::string_view target, std::vector<HeaderField>& headers, CredentialScope scope,
                  HeadRewrite& result) {
  result.redacted = redact_target(target);
  const std::string redacted_path = result.redacted.substr(0, result.redacted.find('?'));
  scope.path = redacted_path;
  CredentialOutcome& outcome = result.outcome;

  const size_t question = target.find('?');
  if (!rewrite_path(target.substr(0, question), scope, result.target, outcome)) return false;
  if (question != std::string_view::npos) {
    result.target += '?';
    std::string redacted_query;
    if (!rewrite_query(target.substr(question + 1), scope, result.target, redacted_query,
                       outcome)) {
      return false;
    }
  }
  for (HeaderField& field : headers) {
    if (!rewrite_header(field, scope, outcome)) return false;
  }
  // Final scan (spec §4.5): anything still looking like a placeholder fails closed.
  bool leftover = contains_credential_marker(result.target);
  for (const HeaderField& field : headers)
    leftover = leftover || contains_credential_marker(field.name) ||
               contains_credential_marker(field.value);
  if (leftover) {
    outcome.failure = CredentialFailure::kUnavailable;
    outcome.key.clear();
    return false;
  }
  return true;
}

}  // namespace

HeadRewrite rewrite_request_credentials(std::string_view target, std::vector<HeaderField>& headers,
                                        CredentialScope scope) {
  HeadRewrite result;
  if (!rewrite_head(target, headers, scope, result)) {
    // Nothing of a refused request goes anywhere: drop what was substituted so far.
    wipe(result.target);
    result.target.clear();
    for (HeaderField& field : headers) {
      if (!contains_credential_marker(field.value)) wipe(field.value);
    }
  }
  return result;
}

}  // namespace openshell::proxy
