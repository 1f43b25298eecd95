// Wall-clock time for events: milliseconds since the Unix epoch and their ISO-8601 UTC form.
// Formatting does its own calendar arithmetic so the hot path takes no libc time-zone lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace openshell::core {

// Milliseconds since 1970-01-01T00:00:00Z (CLOCK_REALTIME; a vDSO call, no syscall).
int64_t now_ms();

// Length of "YYYY-MM-DDTHH:MM:SS.mmmZ" for years 0000..9999.
inline constexpr std::size_t kIso8601Size = 24;

// Appends "2026-11-28T12:00:00.123Z". Years outside 0..9999 are clamped to that range (their
// timestamps are bogus anyway, and a fixed width keeps log columns aligned).
void append_iso8601_ms(std::string& out, int64_t ms_since_epoch);
std::string format_iso8601_ms(int64_t ms_since_epoch);

}  // namespace openshell::core
