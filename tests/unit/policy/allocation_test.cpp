// Deciding allocates nothing on the hot path (an allowed connection or request): counted by
// replacing the global allocator for this test binary.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>

#include "openshell/policy/engine.hpp"
#include "openshell/policy/loader.hpp"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// Every form is replaced, so allocation and release always pair malloc with free (ASan checks).
namespace {
void* counted_malloc(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) {
  return counted_malloc(size);
}
void* operator new[](std::size_t size) {
  return counted_malloc(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

using namespace openshell::policy;

TEST_CASE("allowed L4 and L7 decisions allocate nothing") {
  auto loaded = load_policy(R"(version: 1
network_policies:
  gh:
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow: { method: GET, path: "/repos/*/issues", query: { page: "[0-9]*" } }
        deny_rules:
          - { method: POST, path: "/repos/**" }
      - { host: "*.githubusercontent.com", port: 443 }
    binaries: [{ path: /usr/bin/curl }, { path: "/usr/lib/node_modules/**" }]
)");
  REQUIRE(loaded.ok());
  const auto engine = compile_policy(std::move(*loaded.document), 1);
  const std::vector<std::string> ancestors{"/usr/bin/bash"};
  const std::vector<std::string> none;
  const ProcessIdentity identity{"/usr/bin/curl", ancestors, none};
  const QueryParams query{{"page", "3"}};
  const ConnectInput exact{"api.github.com", 443, &identity};
  const ConnectInput wildcard{"raw.githubusercontent.com", 443, &identity};
  const RequestInput request{"GET", "/repos/acme/issues", &query};

  const long before = g_allocations.load();
  const auto l4 = engine->decide_connect(exact);
  const auto l4_wild = engine->decide_connect(wildcard);
  const auto l7 = engine->decide_request(exact, request);
  const long during = g_allocations.load() - before;

  CHECK(l4.action == Action::kAllow);
  CHECK(l4_wild.action == Action::kAllow);
  CHECK(l7.action == Action::kAllow);
  CHECK(during == 0);
}
