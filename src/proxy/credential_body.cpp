// Request-body placeholder substitution for endpoints that opt in (spec §4.3).
#include "openshell/proxy/credential_body.hpp"

#include "openshell/policy/host_pattern.hpp"
#include "openshell/proxy/http_head.hpp"

namespace openshell::proxy {

namespace {

void escape_json(std::string_view secret, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char ch : secret) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += ch;
    }
  }
}

bool rewrite_form(std::string_view body, const CredentialScope& scope, std::string& out,
                  CredentialOutcome& outcome) {
  size_t at = 0;
  for (;;) {
    const size_t amp = body.find('&', at);
    const std::string_view pair =
        body.substr(at, amp == std::string_view::npos ? std::string_view::npos : amp - at);
    const size_t eq = pair.find('=');
    std::string decoded;
    if (eq != std::string_view::npos && percent_decode(pair.substr(eq + 1), decoded, true) &&
        contains_credential_marker(decoded)) {
      std::string replaced;
      const bool ok = substitute_placeholders(decoded, scope, replaced, outcome);
      if (ok) {
        out.append(pair.substr(0, eq + 1));
        percent_encode_unreserved(replaced, out, true);
      }
      wipe(replaced);
      if (!ok) return false;
    } else {
      out.append(pair);
    }
    if (amp == std::string_view::npos) break;
    out += '&';
    at = amp + 1;
  }
  return true;
}

}  // namespace

CredentialBodyKind credential_body_kind(std::string_view content_type) {
  const std::string value = policy::ascii_lowercase(content_type);
  const std::string_view view(value);
  const size_t semicolon = view.find(';');
  const std::string_view media = trim_ows(view.substr(0, semicolon));
  if (semicolon != std::string_view::npos) {
    std::string_view params = view.substr(semicolon + 1);
    while (!params.empty()) {
      const size_t next = params.find(';');
      const std::string_view param = trim_ows(params.substr(0, next));
      if (param.starts_with("charset=")) {
        std::string_view charset = param.substr(8);
        if (charset.size() >= 2 && charset.front() == '"' && charset.back() == '"') {
          charset = charset.substr(1, charset.size() - 2);
        }
        if (charset != "utf-8" && charset != "utf8" && charset != "us-ascii") {
          return CredentialBodyKind::kOther;
        }
      }
      if (next == std::string_view::npos) break;
      params.remove_prefix(next + 1);
    }
  }
  if (media == "application/json" ||
      (media.starts_with("application/") && media.ends_with("+json"))) {
    return CredentialBodyKind::kJson;
  }
  if (media == "application/x-www-form-urlencoded") return CredentialBodyKind::kForm;
  if (media.starts_with("text/")) return CredentialBodyKind::kText;
  return CredentialBodyKind::kOther;
}

CredentialOutcome rewrite_credential_body(CredentialBodyKind kind, std::string& body,
                                          const CredentialScope& scope) {
  CredentialOutcome outcome;
  // Form values are usually percent-encoded (`%3A`), which the marker scan also sees.
  if (kind == CredentialBodyKind::kOther || !contains_credential_marker(body)) return outcome;
  std::string out;
  out.reserve(body.size());
  bool ok = false;
  switch (kind) {
    case CredentialBodyKind::kJson:
      ok = substitute_placeholders(body, scope, out, outcome, escape_json);
      break;
    case CredentialBodyKind::kForm:
      ok = rewrite_form(body, scope, out, outcome);
      break;
    case CredentialBodyKind::kText:
    case CredentialBodyKind::kOther:
      ok = substitute_placeholders(body, scope, out, outcome);
      break;
  }
  wipe(body);
  if (!ok) {
    wipe(out);
    body.clear();
    return outcome;
  }
  body = std::move(out);
  return outcome;
}

}  // namespace openshell::proxy
