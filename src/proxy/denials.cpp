// Denial aggregation window.
#include "openshell/proxy/denials.hpp"

#include <algorithm>

#include "openshell/core/clock.hpp"

namespace openshell::proxy {

std::optional<DenialUpdate> DenialSubscription::pop(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, timeout, [this] { return closed_ || !queue_.empty(); });
  if (queue_.empty()) return std::nullopt;
  DenialUpdate update = std::move(queue_.front());
  queue_.pop_front();
  update.dropped = dropped_;
  dropped_ = 0;
  return update;
}

void DenialSubscription::close() {
  {
    const std::lock_guard lock(mutex_);
    closed_ = true;
  }
  ready_.notify_all();
}

bool DenialSubscription::closed() const {
  const std::lock_guard lock(mutex_);
  return closed_;
}

void DenialSubscription::push(DenialUpdate update) {
  {
    const std::lock_guard lock(mutex_);
    if (closed_) return;
    if (queue_.size() >= capacity_) {
      queue_.pop_front();
      ++dropped_;
    }
    queue_.push_back(std::move(update));
  }
  ready_.notify_one();
}

std::shared_ptr<DenialSubscription> DenialAggregator::subscribe(size_t capacity) {
  auto subscription = std::make_shared<DenialSubscription>(std::max<size_t>(1, capacity));
  const std::lock_guard lock(subscribers_mutex_);
  subscribers_.push_back(subscription);
  subscriber_count_.store(subscribers_.size());
  return subscription;
}

void DenialAggregator::unsubscribe(const std::shared_ptr<DenialSubscription>& subscription) {
  const std::lock_guard lock(subscribers_mutex_);
  std::erase(subscribers_, subscription);
  subscriber_count_.store(subscribers_.size());
}

void DenialAggregator::publish(const DenialUpdate& update) {
  const std::lock_guard lock(subscribers_mutex_);
  for (const auto& subscriber : subscribers_)
    subscriber->push(update);
}

void DenialAggregator::record(const DenialEvent& event) {
  const int64_t now = core::now_ms();
  total_.fetch_add(1, std::memory_order_relaxed);
  if (subscriber_count_.load() > 0) {
    DenialUpdate update;
    update.kind = DenialUpdate::Kind::kEvent;
    update.event = event;
    // assign(1, c), not = "-": g++ 12 reports a false -Wrestrict on the latter under ASan.
    if (update.event.binary.empty()) update.event.binary.assign(1, '-');
    update.time_ms = now;
    publish(update);
  }
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
  if (subscriber_count_.load() > 0) {
    for (const DenialSummary& summary : out) {
      DenialUpdate update;
      update.kind = DenialUpdate::Kind::kSummary;
      update.summary = summary;
      publish(update);
    }
  }
  return out;
}

uint64_t DenialAggregator::overflow() const {
  const std::lock_guard lock(mutex_);
  return overflow_;
}

}  // namespace openshell::proxy
