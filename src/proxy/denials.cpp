// Denial aggregation window.
#include "openshell/proxy/denials.hpp"

#include <algorithm>

#include "openshell/core/clock.hpp"

namespace openshell::proxy {

void DenialAggregator::record(const DenialEvent& event) {
  const int64_t now = core::now_ms();
  const std::lock_guard lock(mutex_);
  Key key{event.host, event.port, event.binary.empty() ? "-" : event.binary};
  auto it = window_.find(key);
  if (it == window_.end()) {
    if (window_.size() >= kMaxKeys) {
      ++overflow_;
      return;
    }
    DenialSummary summary;
    summary.host = event.host;
    summary.port = event.port;
    summary.binary = std::get<2>(key);
    summary.stage = event.stage;
    summary.first_seen_ms = now;
    it = window_.emplace(std::move(key), std::move(summary)).first;
  }
  DenialSummary& summary = it->second;
  ++summary.count;
  summary.last_seen_ms = now;
  auto& reasons = summary.sample_reasons;
  if (reasons.size() < kMaxSampleReasons &&
      std::find(reasons.begin(), reasons.end(), event.reason) == reasons.end()) {
    reasons.push_back(event.reason);
  }
}

std::vector<DenialSummary> DenialAggregator::flush() {
  std::map<Key, DenialSummary> drained;
  {
    const std::lock_guard lock(mutex_);
    drained.swap(window_);
  }
  std::vector<DenialSummary> out;
  out.reserve(drained.size());
  for (auto& [key, summary] : drained)
    out.push_back(std::move(summary));
  return out;
}

uint64_t DenialAggregator::overflow() const {
  const std::lock_guard lock(mutex_);
  return overflow_;
}

}  // namespace openshell::proxy
