// ISO-8601 formatting of event timestamps, checked against known dates and against gmtime_r.
#include "openshell/core/clock.hpp"

#include <catch2/catch.hpp>
#include <ctime>
#include <random>
#include <string>
#include <vector>

using openshell::core::format_iso8601_ms;

TEST_CASE("ISO-8601 formatting of known instants") {
  CHECK(format_iso8601_ms(0) == "1970-01-01T00:00:00.000Z");
  CHECK(format_iso8601_ms(1795867200123) == "2026-11-28T12:00:00.123Z");
  CHECK(format_iso8601_ms(951868799999) == "2000-02-29T23:59:59.999Z");   // leap day, 400-year rule
  CHECK(format_iso8601_ms(4107459723004) == "2100-02-28T01:02:03.004Z");  // 2100 is not leap
  CHECK(format_iso8601_ms(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(format_iso8601_ms(-2203891200000) == "1900-03-01T00:00:00.000Z");
}

TEST_CASE("ISO-8601 formatting clamps to four-digit years") {
  CHECK(format_iso8601_ms(INT64_MAX) == "9999-12-31T23:59:59.999Z");
  CHECK(format_iso8601_ms(INT64_MIN) == "0000-01-01T00:00:00.000Z");
}

TEST_CASE("ISO-8601 formatting agrees with gmtime_r") {
  std::mt19937_64 random(42);
  // 1900..2400: both sides of the epoch and several leap-year rule boundaries.
  std::uniform_int_distribution<int64_t> instants(-2'208'988'800'000, 13'569'465'600'000);
  // Mismatches are collected, not asserted one by one: 20,000 assertions would drown the TAP log.
  std::vector<std::string> mismatches;
  for (int i = 0; i < 20'000; ++i) {
    const int64_t ms = instants(random);
    int64_t seconds = ms / 1000;
    int64_t millis = ms % 1000;
    if (millis < 0) {
      millis += 1000;
      --seconds;
    }
    const auto t = static_cast<time_t>(seconds);
    std::tm parts{};
    if (gmtime_r(&t, &parts) == nullptr) {
      mismatches.push_back("gmtime_r failed for " + std::to_string(ms));
      continue;
    }
    char expected[64];
    std::snprintf(expected, sizeof expected, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                  parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                  parts.tm_min, parts.tm_sec, static_cast<int>(millis));
    if (format_iso8601_ms(ms) != expected) {
      mismatches.push_back(std::to_string(ms) + ": " + format_iso8601_ms(ms) + " != " + expected);
    }
  }
  CHECK(mismatches == std::vector<std::string>{});
}

TEST_CASE("now_ms is the wall clock") {
  const int64_t now = openshell::core::now_ms();
  CHECK(now > 1'600'000'000'000);  // after 2020
  CHECK(format_iso8601_ms(now).size() == openshell::core::kIso8601Size);
}
