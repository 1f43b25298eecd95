// Locating the shared spec vectors and the project's own test data from unit tests.
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace openshell::test {

// Reads a JSON-lines file; fails the test (rather than passing on zero cases) when it is missing.
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  INFO("reading " << path);
  REQUIRE(in.good());
  std::vector<nlohmann::json> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) cases.push_back(nlohmann::json::parse(line));
  }
  REQUIRE_FALSE(cases.empty());
  return cases;
}

inline std::string env_dir(const char* name, const char* fallback) {
  const char* value =
      std::getenv(name);  // NOLINT(concurrency-mt-unsafe): tests are single-threaded here
  return value != nullptr ? value : fallback;
}

inline std::string specs_dir() {
  return env_dir("OPENSHELL_SPECS_DIR", "../shared/specs");
}
inline std::string source_root() {
  return env_dir("OPENSHELL_SOURCE_ROOT", ".");
}

}  // namespace openshell::test
