// Correlation ids: fixed 16-hex-digit form, unique across threads and across fork.
#include "openshell/core/correlation.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <thread>
#include <vector>

using openshell::core::CorrelationId;

TEST_CASE("correlation ids print as 16 lowercase hex digits") {
  CHECK(CorrelationId(0x1).to_string() == "0000000000000001");
  CHECK(CorrelationId(0x1234abcd00ff0042).to_string() == "1234abcd00ff0042");
  CHECK(CorrelationId().to_string().empty());
  CHECK_FALSE(CorrelationId());

  const std::string text = CorrelationId::next().to_string();
  REQUIRE(text.size() == 16);
  CHECK(std::all_of(text.begin(), text.end(),
                    [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }));
}

TEST_CASE("correlation ids of one thread are distinct and increasing") {
  const CorrelationId first = CorrelationId::next();
  const CorrelationId second = CorrelationId::next();
  CHECK(first);
  CHECK(second.value() > first.value());
  // Same process prefix in the high half.
  CHECK((second.value() >> 32) == (first.value() >> 32));
}

TEST_CASE("correlation ids are unique across threads") {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20'000;
  std::vector<std::vector<uint64_t>> minted(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&minted, t] {
      minted[t].reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i)
        minted[t].push_back(CorrelationId::next().value());
    });
  }
  for (auto& thread : threads)
    thread.join();
  std::set<uint64_t> all;
  for (const auto& ids : minted)
    all.insert(ids.begin(), ids.end());
  CHECK(all.size() == static_cast<std::size_t>(kThreads * kPerThread));
  CHECK(all.count(0) == 0);
}

TEST_CASE("a forked child does not repeat its parent's ids") {
  (void)CorrelationId::next();  // make sure the fork handler is registered
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const uint64_t value = CorrelationId::next().value();
    const bool ok = write(fds[1], &value, sizeof value) == static_cast<ssize_t>(sizeof value);
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  uint64_t child_value = 0;
  CHECK(read(fds[0], &child_value, sizeof child_value) == static_cast<ssize_t>(sizeof child_value));
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  const uint64_t parent_value = CorrelationId::next().value();
  // The child's prefix was redrawn: its id is not the one the parent mints next.
  CHECK(child_value != parent_value);
  CHECK((child_value >> 32) != (parent_value >> 32));
}
