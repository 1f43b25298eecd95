// Millisecond wall clock and ISO-8601 UTC formatting without gmtime_r (which takes glibc's tz
// lock).
#include "openshell/core/clock.hpp"

#include <array>
#include <chrono>

namespace openshell::core {
namespace {

constexpr int64_t kMsPerDay = 86'400'000;
// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z, the range a 4-digit year can show.
constexpr int64_t kMinMs = -62'167'219'200'000;
constexpr int64_t kMaxMs = 253'402'300'799'999;

struct CivilDate {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

// Days since 1970-01-01 to a proleptic Gregorian date. Works in 400-year eras (146097 days) that
// start on March 1st, so the leap day is the last day of each computed year.
CivilDate civil_from_days(int64_t days) {
  days += 719'468;  // shift the epoch to 0000-03-01
  const int64_t era = (days >= 0 ? days : days - 146'096) / 146'097;
  const auto day_of_era = static_cast<unsigned>(days - era * 146'097);  // [0, 146096]
  const unsigned year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36'524 - day_of_era / 146'096) /
      365;  // [0, 399]
  const unsigned day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const unsigned shifted_month = (5 * day_of_year + 2) / 153;  // 0 = March
  const unsigned day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
  const unsigned month = shifted_month < 10 ? shifted_month + 3 : shifted_month - 9;
  const int64_t year = static_cast<int64_t>(year_of_era) + era * 400 + (month <= 2 ? 1 : 0);
  return CivilDate{year, month, day};
}

void put_digits(char* out, unsigned value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

}  // namespace

int64_t now_ms() {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
}

void append_iso8601_ms(std::string& out, int64_t ms_since_epoch) {
  const int64_t ms =
      ms_since_epoch < kMinMs ? kMinMs : (ms_since_epoch > kMaxMs ? kMaxMs : ms_since_epoch);
  int64_t days = ms / kMsPerDay;
  int64_t ms_of_day = ms % kMsPerDay;
  if (ms_of_day < 0) {  // floor division for instants before 1970
    ms_of_day += kMsPerDay;
    --days;
  }
  const CivilDate date = civil_from_days(days);
  const auto of_day = static_cast<unsigned>(ms_of_day);

  std::array<char, kIso8601Size> text{};
  put_digits(&text[0], static_cast<unsigned>(date.year), 4);
  text[4] = '-';
  put_digits(&text[5], date.month, 2);
  text[7] = '-';
  put_digits(&text[8], date.day, 2);
  text[10] = 'T';
  put_digits(&text[11], of_day / 3'600'000, 2);
  text[13] = ':';
  put_digits(&text[14], of_day / 60'000 % 60, 2);
  text[16] = ':';
  put_digits(&text[17], of_day / 1000 % 60, 2);
  text[19] = '.';
  put_digits(&text[20], of_day % 1000, 3);
  text[23] = 'Z';
  out.append(text.data(), text.size());
}

std::string format_iso8601_ms(int64_t ms_since_epoch) {
  std::string out;
  out.reserve(kIso8601Size);
  append_iso8601_ms(out, ms_since_epoch);
  return out;
}

}  // namespace openshell::core
