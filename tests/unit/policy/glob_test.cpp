// The three glob dialects of spec §1.9: every example of the spec, the edge cases of the syntax,
// and hostile patterns that must finish quickly.
#include "openshell/policy/glob.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

using openshell::policy::EndpointPathSelector;
using openshell::policy::Glob;
using openshell::policy::glob_warnings;
using openshell::policy::GlobDialect;

namespace {

bool path_glob(std::string_view pattern, std::string_view value) {
  return Glob::compile(pattern, GlobDialect::kPath).matches(value);
}

bool query_glob(std::string_view pattern, std::string_view value) {
  return Glob::compile(pattern, GlobDialect::kQuery).matches(value);
}

bool selector(std::string_view pattern, std::string_view path) {
  return EndpointPathSelector::compile(pattern).matches(path);
}

}  // namespace

TEST_CASE("path glob: spec §1.9a examples", "[glob]") {
  CHECK(path_glob("/repos/*/issues", "/repos/acme/issues"));
  CHECK_FALSE(path_glob("/repos/*/issues", "/repos/a/b/issues"));
  CHECK(path_glob("/repos/**", "/repos/x/y"));
  CHECK_FALSE(path_glob("/repos/**", "/repos"));
  CHECK(path_glob("/repos/**", "/repos/"));
  CHECK(path_glob("/usr/bin/*", "/usr/bin/node"));
  CHECK_FALSE(path_glob("/usr/bin/*", "/usr/bin/subdir/node"));
  CHECK(path_glob("/**/info/refs*", "/info/refs"));
  CHECK(path_glob("/**/info/refs*", "/org/repo.git/info/refs"));
  CHECK(path_glob("/**/info/refs*", "/org/repo.git/info/refs.txt"));
  CHECK_FALSE(path_glob("/**/info/refs*", "/org/repo.git/info/refs/x"));
}

TEST_CASE("path glob: `**` exactly matches everything", "[glob]") {
  for (const char* value : {"", "/", "/a/b/c", "no-slash", "a.b.c", "//x//"}) {
    CHECK(path_glob("**", value));
  }
}

TEST_CASE("path glob: `*` and `?` never cross '/'", "[glob]") {
  CHECK(path_glob("*", "abc"));
  CHECK(path_glob("*", ""));
  CHECK_FALSE(path_glob("*", "a/b"));
  CHECK(path_glob("/a/?", "/a/b"));
  CHECK_FALSE(path_glob("/a?b", "/a/b"));
  CHECK_FALSE(path_glob("?", ""));
  CHECK(path_glob("*.json", "x.json"));
  CHECK_FALSE(path_glob("*.json", "d/x.json"));
  CHECK(path_glob("/v1/*/x*y", "/v1/abc/x--y"));
  CHECK_FALSE(path_glob("/v1/*/x*y", "/v1/abc/x-/-y"));
}

TEST_CASE("path glob: `**` placements", "[glob]") {
  SECTION("leading **/X: zero or more leading components") {
    CHECK(path_glob("**/node", "node"));
    CHECK(path_glob("**/node", "/node"));
    CHECK(path_glob("**/node", "/usr/bin/node"));
    CHECK(path_glob("**/node", "usr/node"));
    CHECK_FALSE(path_glob("**/node", "/usr/bin/nodejs"));
    CHECK_FALSE(path_glob("**/node", "/usr/binnode"));
  }
  SECTION("trailing X/**: X/ and below, not X") {
    CHECK(path_glob("/a/**", "/a/"));
    CHECK(path_glob("/a/**", "/a/b/c/d"));
    CHECK_FALSE(path_glob("/a/**", "/a"));
    CHECK_FALSE(path_glob("/a/**", "/ab"));
    CHECK_FALSE(path_glob("/a/**", "/ab/c"));
  }
  SECTION("middle X/**/Y: zero or more intermediate components") {
    CHECK(path_glob("/a/**/b", "/a/b"));
    CHECK(path_glob("/a/**/b", "/a/x/b"));
    CHECK(path_glob("/a/**/b", "/a/x/y/z/b"));
    CHECK_FALSE(path_glob("/a/**/b", "/a/xb"));
    CHECK_FALSE(path_glob("/a/**/b", "/ab"));
    CHECK_FALSE(path_glob("/a/**/b", "/a/b/c"));
    CHECK(path_glob("/a/**/**/b", "/a/b"));
    CHECK(path_glob("/a/**/**/b", "/a/x/y/b"));
    CHECK(path_glob("**/**/b", "b"));
  }
  SECTION("`**` glued to other characters is a single-component `*`") {
    CHECK(path_glob("/a**", "/abc"));
    CHECK(path_glob("/a**", "/a"));
    CHECK_FALSE(path_glob("/a**", "/a/b"));
    CHECK(path_glob("**b", "aab"));
    CHECK_FALSE(path_glob("**b", "a/b"));
    CHECK(path_glob("/x/**b/y", "/x/ab/y"));
    CHECK_FALSE(path_glob("/x/**b/y", "/x/a/b/y"));
    CHECK_FALSE(path_glob("/a/***/b", "/a/x/y/b"));
    CHECK(path_glob("/a/***/b", "/a/x/b"));
  }
}

TEST_CASE("path glob: character classes", "[glob]") {
  CHECK(path_glob("/v[0-9]/x", "/v1/x"));
  CHECK_FALSE(path_glob("/v[0-9]/x", "/va/x"));
  CHECK(path_glob("/[abc]", "/b"));
  CHECK_FALSE(path_glob("/[abc]", "/d"));
  CHECK(path_glob("/[!abc]", "/d"));
  CHECK_FALSE(path_glob("/[!abc]", "/a"));
  CHECK(path_glob("/[^abc]", "/d"));
  CHECK_FALSE(path_glob("/[^abc]", "/c"));
  CHECK(path_glob("/[]]", "/]"));
  CHECK(path_glob("/[!]]", "/x"));
  CHECK_FALSE(path_glob("/[!]]", "/]"));
  CHECK(path_glob("/[a-]", "/-"));
  CHECK(path_glob("/[-a]", "/-"));
  CHECK(path_glob("/[a-cx-z]", "/y"));
  CHECK_FALSE(path_glob("/[a-cx-z]", "/m"));
  // As in globset, a class is not barred from the separator.
  CHECK(path_glob("a[!x]b", "a/b"));
  SECTION("malformed classes are literal text") {
    CHECK(path_glob("/a[b", "/a[b"));
    CHECK_FALSE(path_glob("/a[b", "/ab"));
    CHECK(path_glob("/[z-a]", "/[z-a]"));
    CHECK(path_glob("/[]", "/[]"));
    CHECK(path_glob("/x[*", "/x[abc"));
  }
}

TEST_CASE("path glob: escapes", "[glob]") {
  CHECK(path_glob("/a\\*b", "/a*b"));
  CHECK_FALSE(path_glob("/a\\*b", "/axb"));
  CHECK(path_glob("/a\\?", "/a?"));
  CHECK_FALSE(path_glob("/a\\?", "/ab"));
  CHECK(path_glob("/\\[x]", "/[x]"));
  CHECK(path_glob("/a\\\\b", "/a\\b"));
  CHECK(path_glob("/a\\{b,c}", "/a{b,c}"));
  CHECK(path_glob("/end\\", "/end\\"));
  CHECK(path_glob("/\\*\\*/x", "/**/x"));
  CHECK_FALSE(path_glob("/\\*\\*/x", "/a/x"));
}

TEST_CASE("path glob: alternation", "[glob]") {
  CHECK(path_glob("/{issues,pulls}/*", "/issues/1"));
  CHECK(path_glob("/{issues,pulls}/*", "/pulls/2"));
  CHECK_FALSE(path_glob("/{issues,pulls}/*", "/commits/3"));
  CHECK(path_glob("/x.{json,yaml}", "/x.yaml"));
  CHECK(path_glob("/{a,b}/{c,d}", "/b/c"));
  CHECK_FALSE(path_glob("/{a,b}/{c,d}", "/c/b"));
  CHECK(path_glob("/{a,{b,c}}", "/c"));
  CHECK(path_glob("/{*.txt,**/*.md}", "/notes.txt"));
  CHECK(path_glob("{**/x,y}", "/a/b/x"));
  CHECK(path_glob("/{a,[}]}", "/}"));
  CHECK(path_glob("/{a\\,b,c}", "/a,b"));
  SECTION("empty alternatives are dropped, as globset does") {
    CHECK(path_glob("/x{a,}", "/xa"));
    CHECK_FALSE(path_glob("/x{a,}", "/x"));
    CHECK(path_glob("/x{}", "/x"));
    CHECK(path_glob("/x{,}y", "/xy"));
  }
  SECTION("unbalanced braces and stray commas are literal") {
    CHECK(path_glob("/a{b", "/a{b"));
    CHECK(path_glob("/a}b", "/a}b"));
    CHECK(path_glob("/a,b", "/a,b"));
    CHECK(path_glob("/{a,{b}", "/{a,b"));
  }
  SECTION("past 64 alternatives the braces are literal") {
    const std::string pattern = "/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}";  // 128 alternatives
    CHECK(path_glob(pattern, pattern));
    CHECK_FALSE(path_glob(pattern, "/aaaaaaa"));
    const std::string ok = "/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}";  // 64 alternatives
    CHECK(path_glob(ok, "/abbaba"));
  }
}

TEST_CASE("path glob: empty pattern and empty value", "[glob]") {
  CHECK(path_glob("", ""));
  CHECK_FALSE(path_glob("", "/"));
  CHECK_FALSE(path_glob("/", ""));
  CHECK(path_glob("/", "/"));
  CHECK(path_glob("/**", "/"));
  CHECK_FALSE(path_glob("/**", ""));
}

TEST_CASE("path glob: is case-sensitive and anchored", "[glob]") {
  CHECK_FALSE(path_glob("/Repos/*", "/repos/x"));
  CHECK_FALSE(path_glob("/repos", "/repos/"));
  CHECK_FALSE(path_glob("/repos", "x/repos"));
  CHECK_FALSE(path_glob("repos/*", "/repos/x"));
}

TEST_CASE("query glob: spec §1.9b examples", "[glob]") {
  CHECK_FALSE(query_glob("foo-*", "foo-1.2"));
  CHECK_FALSE(query_glob("*", "a.b"));
  CHECK(query_glob("v1.*", "v1.2"));
  CHECK_FALSE(query_glob("v1.*", "v1.2.3"));
  CHECK(query_glob("foo-*", "foo-a/b"));
  CHECK(query_glob("foo-*", "foo-"));
  for (const char* value : {"", "a.b.c", "x/y", "..."})
    CHECK(query_glob("**", value));
}

TEST_CASE("query glob: '.' plays the part of '/'", "[glob]") {
  CHECK(query_glob("v?", "v1"));
  CHECK_FALSE(query_glob("v?", "v."));
  CHECK(query_glob("v1.**", "v1.2.3"));
  CHECK_FALSE(query_glob("v1.**", "v1"));
  CHECK(query_glob("**.json", "a.b.json"));
  CHECK(query_glob("**.json", "json"));
  CHECK(query_glob("a.**.z", "a.z"));
  CHECK(query_glob("a.**.z", "a.b.c.z"));
  CHECK(query_glob("{true,yes}", "yes"));
  CHECK_FALSE(query_glob("{true,yes}", "no"));
  CHECK(query_glob("[0-9][0-9]", "42"));
  CHECK(query_glob("a/*", "a/b/c"));
}

TEST_CASE("endpoint path selector: spec §1.9c", "[glob]") {
  for (const char* any : {"", "**", "/**"}) {
    CHECK(selector(any, "/"));
    CHECK(selector(any, "/a/b/c"));
    CHECK(selector(any, ""));
  }
  CHECK(selector("/v1/*", "/v1/chat/messages"));
  CHECK(selector("/v1/*", "/v1/"));
  CHECK_FALSE(selector("/v1/*", "/v2/chat"));
  SECTION("X/** is X itself or anything under X/") {
    CHECK(selector("/repos/**", "/repos"));
    CHECK(selector("/repos/**", "/repos/"));
    CHECK(selector("/repos/**", "/repos/a/b"));
    CHECK_FALSE(selector("/repos/**", "/reposx"));
    CHECK_FALSE(selector("/repos/**", "/rep"));
    // The prefix is literal, as in the reference.
    CHECK(selector("/r*/**", "/r*/x"));
    CHECK_FALSE(selector("/r*/**", "/repos/x"));
  }
  SECTION("glob crate syntax") {
    CHECK(selector("/v?/x", "/v1/x"));
    CHECK(selector("/v?/x", "/v//x"));  // `?` crosses '/' too
    CHECK(selector("/[!a]/x", "/b/x"));
    CHECK(selector("/a/**/b", "/a/b"));
    CHECK(selector("/a/**/b", "/a/x/y/b"));
    CHECK_FALSE(selector("/a/**/b", "/a/xb"));
    CHECK(selector("**/b", "/x/b"));
    CHECK(selector("/a/**/", "/a/anything"));
    CHECK(selector("/a{b,c}", "/a{b,c}"));  // no alternation
    CHECK_FALSE(selector("/a{b,c}", "/ab"));
    CHECK(selector("/a\\b", "/a\\b"));  // no escapes
  }
  SECTION("an invalid glob matches its exact text only") {
    for (const char* invalid : {"/a**b", "/a/**b", "/***", "/a[", "/a[]", "/x/***/y"}) {
      CAPTURE(invalid);
      CHECK(selector(invalid, invalid));
      CHECK_FALSE(selector(invalid, "/a"));
      CHECK_FALSE(selector(invalid, "/ab"));
    }
    CHECK_FALSE(selector("/a**b", "/axxb"));
  }
  SECTION("a valid glob also matches its own text") {
    CHECK(selector("/a[b]", "/a[b]"));
  }
}

TEST_CASE("endpoint path selector: specificity counts non-'*' characters", "[glob]") {
  CHECK(EndpointPathSelector::compile("").specificity() == 0);
  CHECK(EndpointPathSelector::compile("**").specificity() == 0);
  CHECK(EndpointPathSelector::compile("/**").specificity() == 1);
  CHECK(EndpointPathSelector::compile("/v1/*").specificity() == 4);
  CHECK(EndpointPathSelector::compile("/v1/chat/**").specificity() == 9);
  CHECK(EndpointPathSelector::compile("/caf\xc3\xa9").specificity() == 5);
  CHECK(EndpointPathSelector::compile("/v1/*").selector() == "/v1/*");
}

TEST_CASE("glob_warnings: the reference's messages", "[glob]") {
  CHECK(glob_warnings("/a/*/b").empty());
  CHECK(glob_warnings("/{a,b}/[xy]").empty());
  CHECK(glob_warnings("/a[b") == std::vector<std::string>{"glob pattern '/a[b' has unclosed '['"});
  CHECK(glob_warnings("/a]b") == std::vector<std::string>{"glob pattern '/a]b' has unmatched ']'"});
  CHECK(glob_warnings("/a{b") == std::vector<std::string>{"glob pattern '/a{b' has unclosed '{'"});
  CHECK(glob_warnings("/a}b") == std::vector<std::string>{"glob pattern '/a}b' has unmatched '}'"});
  // Brackets are checked first and only one malformation is reported.
  CHECK(glob_warnings("/a[{") == std::vector<std::string>{"glob pattern '/a[{' has unclosed '['"});
  const auto long_pattern = glob_warnings(std::string(2000, 'a'));
  REQUIRE(long_pattern.size() == 1);
  CHECK_THAT(long_pattern[0], Catch::Contains("matched as plain text"));
}

TEST_CASE("glob: programs longer than one 64-state word", "[glob]") {
  // The wildcards sit far apart, so the part between them compiles to well over 64 states.
  const std::string middle(90, 'm');
  const std::string pattern = "/a/*/" + middle + "/**/" + middle + "/?/z";
  CHECK(path_glob(pattern, "/a/x/" + middle + "/" + middle + "/q/z"));
  CHECK(path_glob(pattern, "/a//" + middle + "/p/q/r/" + middle + "/q/z"));
  CHECK_FALSE(path_glob(pattern, "/a/x/y/" + middle + "/" + middle + "/q/z"));
  CHECK_FALSE(path_glob(pattern, "/a/x/" + middle + "/" + middle + "/qq/z"));
  CHECK_FALSE(path_glob(pattern, "/a/x/" + middle + "m/" + middle + "/q/z"));
  std::string components = "/**";
  std::string value;
  for (int i = 0; i < 40; ++i) {
    components += "/c/**";
    value += "/c/d";
  }
  CHECK(path_glob(components + "/e", value + "/e"));
  CHECK(path_glob(components + "/e", "/x" + value + "/y/e"));
  CHECK_FALSE(path_glob(components + "/e", value.substr(4) + "/e"));  // one `c` short
}

TEST_CASE("glob: very long patterns are plain text", "[glob]") {
  const std::string pattern = "/" + std::string(1500, '*');
  CHECK(path_glob(pattern, pattern));
  CHECK_FALSE(path_glob(pattern, "/x"));
  CHECK(selector(pattern, pattern));
  CHECK_FALSE(selector(pattern, "/x"));
}

TEST_CASE("glob: copies and moves keep the program", "[glob]") {
  Glob original = Glob::compile("/a/*", GlobDialect::kPath);
  Glob copy = original;
  CHECK(copy.matches("/a/b"));
  CHECK(copy.pattern() == "/a/*");
  Glob assigned = Glob::compile("x", GlobDialect::kQuery);
  assigned = copy;
  CHECK(assigned.matches("/a/c"));
  Glob moved = std::move(original);
  CHECK(moved.matches("/a/d"));
  std::vector<Glob> many(3, moved);
  CHECK(many[2].matches("/a/e"));

  EndpointPathSelector s = EndpointPathSelector::compile("/v1/**");
  EndpointPathSelector s_copy = s;
  EndpointPathSelector s_moved = std::move(s);
  CHECK(s_copy.matches("/v1"));
  CHECK(s_moved.matches("/v1/x"));
  CHECK(s_copy.specificity() == s_moved.specificity());
}

TEST_CASE("glob: hostile patterns finish quickly", "[glob][slow]") {
  const auto start = std::chrono::steady_clock::now();
  const std::string as(4096, 'a');
  CHECK_FALSE(path_glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", as));
  CHECK_FALSE(query_glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", as));
  CHECK_FALSE(selector("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", as));
  CHECK_FALSE(path_glob("**/a*/**/a*/**/a*/**/a*/**/b", "/" + std::string(2000, 'a')));
  std::string deep;
  for (int i = 0; i < 1000; ++i)
    deep += "/a";
  CHECK_FALSE(path_glob("/**/a/**/a/**/a/**/a/**/a/**/b", deep));
  CHECK(path_glob("/**/a/**/a/**/a/**/a/**/a/**/a", deep));
  std::string stars;
  for (int i = 0; i < 300; ++i)
    stars += "*?";
  CHECK_FALSE(path_glob(stars + "b", as));
  CHECK(path_glob(stars, as));
  std::string braces;
  for (int i = 0; i < 20; ++i)
    braces += "{a*,*a,?}";
  CHECK_FALSE(path_glob(braces + "b", as));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Generous for sanitizer builds; an exponential matcher would take years.
  CHECK(elapsed < std::chrono::seconds(5));
}
