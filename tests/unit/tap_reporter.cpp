// Links Catch2's TAP reporter into every unit-test binary so `meson test` (protocol: tap) and CI
// count assertions (BUILD-NOTES §9.9).
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>
#include <catch2/catch_reporter_tap.hpp>

Catch::TAPReporter::~TAPReporter() = default;
