// Rendering one Event as a JSON line (OCSF 1.8.0 object) or as the human one-line shorthand.
// Pure functions, callable from any thread; the sinks in log.hpp use them.
#pragma once

#include <string>

#include "openshell/core/event.hpp"

namespace openshell::core {

// Appends one OCSF JSON object and '\n'. Unset fields are omitted; every string is escaped and
// bounded, so the line is always valid JSON (ill-formed UTF-8 becomes U+FFFD).
void render_json(const Event& event, std::string& out);

// Appends the shorthand line and '\n', e.g.
//   2026-11-28T12:00:00.123Z OCSF NET:OPEN [MED] DENIED /usr/bin/curl(64) -> httpbin.org:443
//   [policy:- engine:opa] [reason:...] cid=...
// Diagnostics read "2026-11-28T12:00:00.123Z WARN  message". `colour` adds ANSI colours (only
// for terminals). Controls and terminal escapes in values are shown escaped.
void render_text(const Event& event, std::string& out, bool colour = false);

// The same without the trailing newline, for tests, gRPC streams and error messages.
std::string to_json(const Event& event);
std::string to_text(const Event& event, bool colour = false);

}  // namespace openshell::core
