// Request-target canonicalisation and query parsing (spec §2.7): the shared vectors, the spec's
// examples, and the error paths the vectors do not reach.
#include "openshell/policy/path_canon.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>

using openshell::policy::canon_error_name;
using openshell::policy::CanonError;
using openshell::policy::canonicalize_target;
using openshell::policy::CanonicalTarget;
using openshell::policy::CanonOptions;
using openshell::policy::kMaxPathLength;
using openshell::policy::parse_query;
using openshell::policy::QueryParams;

namespace {

// "path:<canonical>" or "error:<Name>", so one CHECK shows both sides on failure.
std::string canon(std::string_view target, CanonOptions options = {}) {
  const auto result = canonicalize_target(target, options);
  if (const auto* error = std::get_if<CanonError>(&result)) {
    return "error:" + std::string(canon_error_name(*error));
  }
  return "path:" + std::get<CanonicalTarget>(result).path;
}

QueryParams query(std::string_view raw) {
  QueryParams params;
  INFO("query: " << raw);
  REQUIRE(parse_query(raw, params));
  return params;
}

bool query_rejected(std::string_view raw) {
  QueryParams params;
  return !parse_query(raw, params);
}

}  // namespace

TEST_CASE("canonicalize_target: path-canonicalization-cases.jsonl", "[canon]") {
  const char* dir = std::getenv("OPENSHELL_SPECS_DIR");
  INFO("OPENSHELL_SPECS_DIR must point at the shared specs (meson sets it)");
  REQUIRE(dir != nullptr);
  const std::string path = std::string(dir) + "/vectors/path-canonicalization-cases.jsonl";
  std::ifstream in(path);
  INFO("vectors file: " << path);
  REQUIRE(in.is_open());
  int cases = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto vector = nlohmann::json::parse(line);
    const std::string input = vector.at("input").get<std::string>();
    const auto& opts = vector.at("options");
    const CanonOptions options{opts.at("allow_encoded_slash").get<bool>(),
                               opts.at("strip_path_parameters").get<bool>()};
    const auto& expect = vector.at("expect");
    INFO("case " << cases << " (" << vector.at("source").get<std::string>() << "): '" << input
                 << "'");
    const auto result = canonicalize_target(input, options);
    if (expect.contains("error")) {
      REQUIRE(std::holds_alternative<CanonError>(result));
      CHECK(canon_error_name(std::get<CanonError>(result)) ==
            expect.at("error").get<std::string>());
    } else {
      REQUIRE(std::holds_alternative<CanonicalTarget>(result));
      const auto& target = std::get<CanonicalTarget>(result);
      CHECK(target.path == expect.at("path").get<std::string>());
      if (expect.contains("raw_query")) {
        CHECK(target.has_query);
        CHECK(target.raw_query == expect.at("raw_query").get<std::string>());
      } else {
        CHECK_FALSE(target.has_query);
      }
      // A canonical path is a fixed point.
      CHECK(canon(target.path, options) == "path:" + target.path);
    }
    ++cases;
  }
  CHECK(cases == 57);
}

TEST_CASE("canonicalize_target: spec §2.7 examples", "[canon]") {
  CHECK(canon("/public/%2e%2e/secret") == "path:/secret");
  CHECK(canon("/public/..;/secret") == "path:/secret");
  CHECK(canon("//public//../secret") == "path:/secret");
  CHECK(canon("/users/%40alice") == "path:/users/@alice");
  CHECK(canon("/a/caf%c3%a9") == "path:/a/caf%C3%A9");
  CHECK(canon("/a/b/..") == "path:/a/");
}

TEST_CASE("canonicalize_target: rejected targets", "[canon]") {
  SECTION("control bytes, raw or encoded") {
    CHECK(canon(std::string("/a\0b", 4)) == "error:NullOrControlByte");
    CHECK(canon("/a\tb") == "error:NullOrControlByte");
    CHECK(canon("/a\rb") == "error:NullOrControlByte");
    CHECK(canon("/a\x7f") == "error:NullOrControlByte");
    CHECK(canon("/a%09b") == "error:NullOrControlByte");
    CHECK(canon("/a%1F") == "error:NullOrControlByte");
    CHECK(canon("/a?q=\n") == "error:NullOrControlByte");  // the query is checked too
  }
  SECTION("raw non-ASCII and fragments, in the query as well") {
    CHECK(canon("/a?q=\xc3\xa9") == "error:NonAscii");
    CHECK(canon("/a?q=1#frag") == "error:FragmentInRequestTarget");
    CHECK(canon("#") == "error:FragmentInRequestTarget");
  }
  SECTION("not origin-form or absolute-form") {
    CHECK(canon("*") == "error:MalformedTarget");
    CHECK(canon("example.com:443") == "error:MalformedTarget");
    CHECK(canon("relative/path") == "error:MalformedTarget");
    CHECK(canon("://host/x") == "error:MalformedTarget");
    CHECK(canon("1http://host/x") == "error:MalformedTarget");
    CHECK(canon("http:///x") == "error:MalformedTarget");
    CHECK(canon("http://ho^st/x") == "error:MalformedTarget");
    CHECK(canon("?q=1") == "path:/");
  }
  SECTION("bad percent-encoding") {
    CHECK(canon("/a%") == "error:InvalidPercentEncoding");
    CHECK(canon("/a%4") == "error:InvalidPercentEncoding");
    CHECK(canon("/a%zz") == "error:InvalidPercentEncoding");
    CHECK(canon("/a%4g/b") == "error:InvalidPercentEncoding");
    CHECK(canon("/a%41") == "path:/aA");
  }
  SECTION("length is bounded") {
    const std::string at_limit = "/" + std::string(kMaxPathLength - 1, 'a');
    CHECK(canon(at_limit) == "path:" + at_limit);
    CHECK(canon(at_limit + "a") == "error:PathTooLong");
    // The query does not count.
    CHECK(canon(at_limit + "?" + std::string(8000, 'q')) == "path:" + at_limit);
  }
}

TEST_CASE("canonicalize_target: other shapes", "[canon]") {
  CHECK(canon("/a/..") == "path:/");
  CHECK(canon("/.") == "path:/");
  CHECK(canon("/a/./") == "path:/a/");
  CHECK(canon("/a//") == "path:/a/");
  CHECK(canon("/a/b/../../c") == "path:/c");
  CHECK(canon("/...") == "path:/...");
  CHECK(canon("/.a/..b") == "path:/.a/..b");
  CHECK(canon("/a%2E%2E") == "path:/a..");
  CHECK(canon("/a b\"<>") == "path:/a%20b%22%3C%3E");
  CHECK(canon("/%7e%41") == "path:/~A");
  CHECK(canon("/[x]{y}|") == "path:/%5Bx%5D%7By%7D%7C");
  CHECK(canon("/a;p/..;q/b") == "path:/b");
  CHECK(canon("/;x/a") == "path:/a");
  CHECK(canon("/a/;x") == "path:/a/");
  CHECK(canon("HTTPS://Host:8443/x/../y") == "path:/y");
  CHECK(canon("http://user@host/a") == "path:/a");
  CHECK(canon("http://[::1]:8080/test") == "path:/test");
  CHECK(canon("http://host:8080?key=val") == "path:/");
  const CanonOptions keep_params{false, false};
  CHECK(canon("/a;x/../b;y", keep_params) == "path:/b;y");
  CHECK(canon("/..;", keep_params) == "path:/..;");
  const CanonOptions slash{true, true};
  CHECK(canon("/a/%2F..%2Fb", slash) == "error:ResidualDotSegment");
  CHECK(canon("/a/..%2Fb/..", slash) == "path:/a/");  // only surviving segments count
  CHECK(canon("/%2F", slash) == "path:/%2F");
}

TEST_CASE("canonicalize_target: query is kept verbatim", "[canon]") {
  const auto result = canonicalize_target("/a/../b?x=%2F&y=..&z", {});
  REQUIRE(std::holds_alternative<CanonicalTarget>(result));
  const auto& target = std::get<CanonicalTarget>(result);
  CHECK(target.path == "/b");
  CHECK(target.has_query);
  CHECK(target.raw_query == "x=%2F&y=..&z");
  const auto empty = std::get<CanonicalTarget>(canonicalize_target("/a?", {}));
  CHECK(empty.has_query);
  CHECK(empty.raw_query.empty());
  CHECK(std::get<CanonicalTarget>(canonicalize_target("/a?b?c", {})).raw_query == "b?c");
}

TEST_CASE("canon_error_name covers every error", "[canon]") {
  CHECK(canon_error_name(CanonError::kNullOrControlByte) == "NullOrControlByte");
  CHECK(canon_error_name(CanonError::kNonAscii) == "NonAscii");
  CHECK(canon_error_name(CanonError::kFragmentInRequestTarget) == "FragmentInRequestTarget");
  CHECK(canon_error_name(CanonError::kMalformedTarget) == "MalformedTarget");
  CHECK(canon_error_name(CanonError::kPathTooLong) == "PathTooLong");
  CHECK(canon_error_name(CanonError::kEncodedSlashNotAllowed) == "EncodedSlashNotAllowed");
  CHECK(canon_error_name(CanonError::kInvalidPercentEncoding) == "InvalidPercentEncoding");
  CHECK(canon_error_name(CanonError::kTraversalAboveRoot) == "TraversalAboveRoot");
  CHECK(canon_error_name(CanonError::kResidualDotSegment) == "ResidualDotSegment");
}

TEST_CASE("parse_query: spec §2.7", "[query]") {
  SECTION("pairs in order, repeated keys accumulate") {
    CHECK(query("a=1&b=2&a=3") == QueryParams{{"a", "1"}, {"b", "2"}, {"a", "3"}});
  }
  SECTION("empty pairs are skipped") {
    CHECK(query("") == QueryParams{});
    CHECK(query("&&a=1&&") == QueryParams{{"a", "1"}});
    CHECK(query("&") == QueryParams{});
  }
  SECTION("no '=' means an empty value; only the first '=' splits") {
    CHECK(query("flag") == QueryParams{{"flag", ""}});
    CHECK(query("flag&x=") == QueryParams{{"flag", ""}, {"x", ""}});
    CHECK(query("=v") == QueryParams{{"", "v"}});
    CHECK(query("=") == QueryParams{{"", ""}});
    CHECK(query("a=b=c") == QueryParams{{"a", "b=c"}});
  }
  SECTION("'+' is a space and %HH is decoded, in keys and values") {
    CHECK(query("q=hello+world") == QueryParams{{"q", "hello world"}});
    CHECK(query("my+key=%41%62") == QueryParams{{"my key", "Ab"}});
    CHECK(query("q=%2B") == QueryParams{{"q", "+"}});
    CHECK(query("q=%26x%3Dy") == QueryParams{{"q", "&x=y"}});
    CHECK(query("name=caf%C3%A9") == QueryParams{{"name", "caf\xc3\xa9"}});
    CHECK(query("force=true&force=false") == QueryParams{{"force", "true"}, {"force", "false"}});
    CHECK(query("next=http://other.test") == QueryParams{{"next", "http://other.test"}});
  }
  SECTION("bad percent-encoding rejects the query") {
    CHECK(query_rejected("q=%"));
    CHECK(query_rejected("q=%4"));
    CHECK(query_rejected("q=%zz"));
    CHECK(query_rejected("%g1=v"));
    CHECK(query_rejected("ok=1&bad=%"));
  }
  SECTION("decoded bytes must be UTF-8") {
    CHECK(query_rejected("q=%C3"));           // truncated
    CHECK(query_rejected("q=%FF"));           // never valid
    CHECK(query_rejected("q=%C0%AF"));        // overlong '/'
    CHECK(query_rejected("q=%ED%A0%80"));     // surrogate
    CHECK(query_rejected("q=%F4%90%80%80"));  // past U+10FFFF
    CHECK(query_rejected("%80=v"));
    CHECK(query("q=%F0%9F%98%80") == QueryParams{{"q", "\xf0\x9f\x98\x80"}});
    CHECK(query("q=%E2%82%AC") == QueryParams{{"q", "\xe2\x82\xac"}});
  }
  SECTION("the output is replaced, not appended to") {
    QueryParams params{{"stale", "x"}};
    REQUIRE(parse_query("a=1", params));
    CHECK(params == QueryParams{{"a", "1"}});
  }
}
