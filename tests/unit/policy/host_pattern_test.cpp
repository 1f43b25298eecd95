// Host patterns (spec §1.7, §1.8): every matching example of the spec, the validator's messages,
// and the host cases of the shared validation vectors.
#include "openshell/policy/host_pattern.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

using openshell::policy::ascii_lowercase;
using openshell::policy::HostPattern;
using openshell::policy::validate_host_pattern;

namespace {

bool host_matches(std::string_view pattern, std::string_view host) {
  return HostPattern::compile(pattern).matches(ascii_lowercase(host));
}

// Replaces every `from` in `text` with `to`.
std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string specs_dir() {
  const char* dir = std::getenv("OPENSHELL_SPECS_DIR");
  INFO("OPENSHELL_SPECS_DIR must point at the shared specs (meson sets it)");
  REQUIRE(dir != nullptr);
  return dir;
}

}  // namespace

TEST_CASE("host pattern: spec §1.8 examples", "[host]") {
  SECTION("*.example.com: exactly one label") {
    CHECK(host_matches("*.example.com", "api.example.com"));
    CHECK_FALSE(host_matches("*.example.com", "example.com"));
    CHECK_FALSE(host_matches("*.example.com", "a.b.example.com"));
  }
  SECTION("**.example.com: one or more labels") {
    CHECK(host_matches("**.example.com", "a.example.com"));
    CHECK(host_matches("**.example.com", "a.b.example.com"));
    CHECK_FALSE(host_matches("**.example.com", "example.com"));
  }
  SECTION("intra-label wildcard") {
    CHECK(host_matches("*-aiplatform.googleapis.com", "us-central1-aiplatform.googleapis.com"));
    CHECK_FALSE(
        host_matches("*-aiplatform.googleapis.com", "us-central1.aiplatform.googleapis.com"));
  }
  SECTION("middle-label wildcard") {
    CHECK(host_matches("*.s3.*.amazonaws.com", "bucket.s3.us-east-1.amazonaws.com"));
    CHECK_FALSE(host_matches("*.s3.*.amazonaws.com", "s3.us-east-1.amazonaws.com"));
    CHECK_FALSE(
        host_matches("*.s3.*.amazonaws.com", "bucket.s3.dualstack.us-east-1.amazonaws.com"));
  }
  SECTION("recursive labels elsewhere") {
    CHECK(host_matches("api.**.com", "api.x.com"));
    CHECK(host_matches("api.**.com", "api.x.y.com"));
    CHECK_FALSE(host_matches("api.**.com", "api.com"));
    CHECK(host_matches("api.**", "api.com"));
    CHECK_FALSE(host_matches("api.**", "api"));
  }
  SECTION("percent signs are literal") {
    CHECK_FALSE(host_matches("*.example.com", "evil%2eexample.com"));
  }
  SECTION("case-insensitive") {
    CHECK(host_matches("*.Example.COM", "API.example.com"));
    CHECK(host_matches("**.EXAMPLE.com", "a.B.example.Com"));
  }
  SECTION("a host containing NUL never matches (the engine denies)") {
    CHECK_FALSE(HostPattern::compile("*.example.com").matches(std::string("a\0b.example.com", 15)));
    CHECK_FALSE(HostPattern::compile("**.com").matches(std::string("x.\0.com", 7)));
  }
}

TEST_CASE("host pattern: single-label globs", "[host]") {
  CHECK(host_matches("api-?.example.com", "api-1.example.com"));
  CHECK_FALSE(host_matches("api-?.example.com", "api-12.example.com"));
  CHECK(host_matches("api-[0-9].example.com", "api-7.example.com"));
  CHECK_FALSE(host_matches("api-[0-9].example.com", "api-x.example.com"));
  CHECK(host_matches("*api*.example.com", "myapi2.example.com"));
  CHECK(host_matches("*.example.com", ".example.com"));  // `*` may be empty, as in the engine
  CHECK_FALSE(host_matches("*.example.com", "api.example.com."));
  CHECK_FALSE(host_matches("*.example.com", "api.example.org"));
  CHECK_FALSE(host_matches("*.example.com", "apiexample.com"));
}

TEST_CASE("host pattern: several recursive labels stay linear", "[host]") {
  CHECK(host_matches("**.**.example.com", "a.b.example.com"));
  CHECK_FALSE(host_matches("**.**.example.com", "a.example.com"));
  CHECK(host_matches("**.mid.**.com", "a.b.mid.c.d.com"));
  CHECK_FALSE(host_matches("**.mid.**.com", "a.mid.com"));
  std::string pattern;
  for (int i = 0; i < 60; ++i)
    pattern += "**.";
  pattern += "z";
  std::string host;
  for (int i = 0; i < 120; ++i)
    host += "a.";
  CHECK_FALSE(host_matches(pattern, host + "y"));
  CHECK(host_matches(pattern, host + "z"));
}

TEST_CASE("host pattern: literal tail labels", "[host]") {
  CHECK(host_matches("api.example.com", "api.example.com"));  // no wildcard at all
  CHECK_FALSE(host_matches("api.example.com", "xapi.example.com"));
  CHECK_FALSE(host_matches("api.example.com", "example.com"));
  CHECK(host_matches("api.example.*", "api.example.org"));  // no literal tail
  CHECK_FALSE(host_matches("api.example.*", "api.example.org.uk"));
  CHECK(host_matches("api.*.com", "api.x.com"));
  CHECK_FALSE(host_matches("api.*.com", "api.com"));
  CHECK_FALSE(host_matches("api.*.com", "xapi.y.com"));
  CHECK_FALSE(host_matches("*.example.com", "xexample.com"));
  CHECK(host_matches("**.com", "a.b.com"));
  CHECK_FALSE(host_matches("**.com", "com"));
  CHECK(host_matches("*.Example.com", "a.example.com"));  // the tail is lowercased too
  CHECK(host_matches("*", ""));  // one empty label; the validator rejects this pattern anyway
  CHECK(host_matches("", ""));
  CHECK_FALSE(host_matches("", "a"));
}

TEST_CASE("host pattern: keeps the text as written", "[host]") {
  CHECK(HostPattern::compile("*.Example.com").pattern() == "*.Example.com");
  const HostPattern empty;
  CHECK_FALSE(empty.matches("example.com"));
}

TEST_CASE("validate_host_pattern: spec §1.7 messages", "[host]") {
  CHECK_FALSE(validate_host_pattern("api.example.com").has_value());
  CHECK_FALSE(validate_host_pattern("com").has_value());  // exact hosts are not its business
  CHECK_FALSE(validate_host_pattern("*.example.com").has_value());
  CHECK_FALSE(validate_host_pattern("**.example.com").has_value());
  CHECK_FALSE(validate_host_pattern("*-aiplatform.googleapis.com").has_value());
  CHECK_FALSE(validate_host_pattern("*.s3.*.amazonaws.com").has_value());

  CHECK(validate_host_pattern("*") ==
        "host wildcard '*' matches all hosts; use specific patterns like '*.example.com'");
  CHECK(validate_host_pattern("**") ==
        "host wildcard '**' matches all hosts; use specific patterns like '*.example.com'");
  CHECK(validate_host_pattern("foo**.example.com") ==
        "recursive host wildcard '**' is only allowed as the entire first DNS label, got "
        "'foo**.example.com'");
  CHECK(validate_host_pattern("*.s3.**.amazonaws.com") ==
        "recursive host wildcard '**' is only allowed as the entire first DNS label, got "
        "'*.s3.**.amazonaws.com'");
  CHECK(validate_host_pattern("api.**") ==
        "recursive host wildcard '**' is only allowed as the entire first DNS label, got "
        "'api.**'");
  CHECK(validate_host_pattern("foo.us-*.x.com") ==
        "middle DNS label wildcard must be the entire label '*', got 'foo.us-*.x.com'");
  CHECK(validate_host_pattern("*.com") ==
        "TLD wildcard '*.com' is not allowed; use subdomain wildcards like '*.example.com' "
        "instead");
  CHECK(validate_host_pattern("**.org") ==
        "TLD wildcard '**.org' is not allowed; use subdomain wildcards like '*.example.com' "
        "instead");
  CHECK(validate_host_pattern("*com") ==
        "TLD wildcard '*com' is not allowed; use subdomain wildcards like '*.example.com' "
        "instead");
}

TEST_CASE("validate_host_pattern: host cases of policy-validation-cases.jsonl", "[host]") {
  const std::string path = specs_dir() + "/vectors/policy-validation-cases.jsonl";
  std::ifstream in(path);
  INFO("vectors file: " << path);
  REQUIRE(in.is_open());
  int cases = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto vector = nlohmann::json::parse(line);
    const std::string name = vector.at("name").get<std::string>();
    if (name.rfind("host_wildcard_", 0) != 0 && name.rfind("tld_wildcard_", 0) != 0) continue;
    const std::string yaml = vector.at("policy_yaml").get<std::string>();
    const std::string_view field = "host: \"";
    const size_t start = yaml.find(field);
    REQUIRE(start != std::string::npos);
    const size_t end = yaml.find('"', start + field.size());
    REQUIRE(end != std::string::npos);
    const std::string host = yaml.substr(start + field.size(), end - start - field.size());
    const auto& expect = vector.at("expect");
    const auto message = validate_host_pattern(host);
    INFO(name << ": host '" << host << "'");
    if (expect.at("valid").get<bool>()) {
      CHECK_FALSE(message.has_value());
      // A pattern the validator accepts must match a host built from it.
      const std::string concrete = replace_all(replace_all(host, "**", "a.b"), "*", "x");
      CHECK(HostPattern::compile(host).matches(concrete));
    } else {
      REQUIRE(message.has_value());
      CHECK_THAT(*message, Catch::Contains(expect.at("error_contains").get<std::string>()));
    }
    ++cases;
  }
  // 12 host_wildcard_* cases plus the TLD case of the policy crate.
  CHECK(cases == 13);
}

TEST_CASE("ascii_lowercase", "[host]") {
  CHECK(ascii_lowercase("API.Example.COM") == "api.example.com");
  CHECK(ascii_lowercase("") == "");
  CHECK(ascii_lowercase("\xc3\x89X") == "\xc3\x89x");  // non-ASCII bytes untouched
}
