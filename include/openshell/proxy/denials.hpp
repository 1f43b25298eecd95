// Denial aggregation (spec §7.2): every denial is counted per (host, port, binary); each window
// the summaries are flushed as events, so a client hammering a blocked host is one line per window.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace openshell::proxy {

struct DenialEvent {
  std::string host;
  uint16_t port = 0;
  std::string binary;  // "-" when unknown
  std::string reason;
  std::string stage;  // connect, forward, ssrf, forward-l7-deny, …
};

struct DenialSummary {
  std::string host;
  uint16_t port = 0;
  std::string binary;
  std::string stage;  // of the first event
  uint64_t count = 0;
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  std::vector<std::string> sample_reasons;  // distinct, at most kMaxSampleReasons
};

class DenialAggregator {
 public:
  static constexpr size_t kMaxSampleReasons = 5;
  // Bounds memory when a client sprays distinct hosts: past this, new keys are counted in
  // `overflow` and summarised once.
  static constexpr size_t kMaxKeys = 4096;

  void record(const DenialEvent& event);
  // Drains the window's summaries (key order).
  std::vector<DenialSummary> flush();
  uint64_t overflow() const;

 private:
  using Key = std::tuple<std::string, uint16_t, std::string>;
  mutable std::mutex mutex_;
  std::map<Key, DenialSummary> window_;
  uint64_t overflow_ = 0;
};

}  // namespace openshell::proxy
