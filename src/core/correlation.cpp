// Correlation id minting: a random process prefix drawn once (and again in a forked child) plus an
// atomic counter, so the per-connection cost is a single fetch_add.
#include "openshell/core/correlation.hpp"

#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

namespace openshell::core {
namespace {

std::atomic<uint64_t> g_prefix{0};
std::atomic<uint64_t> g_counter{1};

uint64_t draw_prefix() {
  uint32_t random = 0;
  if (getrandom(&random, sizeof random, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof random)) {
    // No entropy yet (very early boot) or no getrandom: fall back to something that still differs
    // between processes started at different times.
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    random = static_cast<uint32_t>(static_cast<uint64_t>(ticks) ^
                                   (static_cast<uint64_t>(getpid()) << 16));
  }
  return static_cast<uint64_t>(random) << 32;
}

void reseed_after_fork() {
  // The child would otherwise continue the parent's sequence and repeat its ids.
  g_prefix.store(draw_prefix(), std::memory_order_relaxed);
  g_counter.store(1, std::memory_order_relaxed);
}

struct PrefixInit {
  PrefixInit() {
    g_prefix.store(draw_prefix(), std::memory_order_relaxed);
    pthread_atfork(nullptr, nullptr, reseed_after_fork);
  }
};

}  // namespace

CorrelationId CorrelationId::next() {
  static const PrefixInit init;
  for (;;) {
    // prefix + counter modulo 2^64 is injective in the counter, so ids never repeat within a
    // process even after the low half wraps.
    const uint64_t value = g_prefix.load(std::memory_order_relaxed) +
                           g_counter.fetch_add(1, std::memory_order_relaxed);
    if (value != 0) return CorrelationId(value);
  }
}

std::array<char, CorrelationId::kTextSize> CorrelationId::chars() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::array<char, kTextSize> text{};
  uint64_t rest = value_;
  for (std::size_t i = kTextSize; i-- > 0;) {
    text[i] = kHex[rest & 0xf];
    rest >>= 4;
  }
  return text;
}

std::string CorrelationId::to_string() const {
  std::string out;
  append_to(out);
  return out;
}

void CorrelationId::append_to(std::string& out) const {
  if (empty()) return;
  const auto text = chars();
  out.append(text.data(), text.size());
}

}  // namespace openshell::core
