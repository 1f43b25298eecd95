// Denial aggregation (spec §7.2): every denial is counted per (host, port, binary); each window
// the summaries are flushed as events, so a client hammering a blocked host is one line per window.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

// One item a watcher receives: an individual denial as it happens, or a window summary.
struct DenialUpdate {
  enum class Kind { kEvent, kSummary };
  Kind kind = Kind::kEvent;
  DenialEvent event;      // kEvent
  int64_t time_ms = 0;    // when the event was recorded (kEvent)
  DenialSummary summary;  // kSummary
  uint64_t dropped = 0;   // updates this watcher lost (slow reader) just before this one
};

// A watcher's bounded queue. The proxy never waits for a watcher: when the queue is full the
// oldest update is dropped and counted, so a stalled `ctl watch-denials` costs memory ≤ capacity.
class DenialSubscription {
 public:
  explicit DenialSubscription(size_t capacity) : capacity_(capacity) {}

  // The next update, waiting up to `timeout`; nullopt on timeout or once closed and drained.
  std::optional<DenialUpdate> pop(std::chrono::milliseconds timeout);
  // Wakes the reader; later pushes are ignored.
  void close();
  bool closed() const;

  void push(DenialUpdate update);

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<DenialUpdate> queue_;
  uint64_t dropped_ = 0;  // since the last pop
  bool closed_ = false;
};

class DenialAggregator {
 public:
  // Per-watcher queue: a burst of this many denials between two reads loses nothing.
  static constexpr size_t kSubscriberCapacity = 1024;

  static constexpr size_t kMaxSampleReasons = 5;
  // Bounds memory when a client sprays distinct hosts: past this, new keys are counted in
  // `overflow` and summarised once.
  static constexpr size_t kMaxKeys = 4096;

  void record(const DenialEvent& event);
  // Drains the window's summaries (key order).
  std::vector<DenialSummary> flush();
  uint64_t overflow() const;
  // Denials recorded since start (including those past kMaxKeys).
  uint64_t total() const { return total_.load(std::memory_order_relaxed); }

  // Watchers get every recorded event and every flushed summary until they unsubscribe.
  std::shared_ptr<DenialSubscription> subscribe(size_t capacity = kSubscriberCapacity);
  void unsubscribe(const std::shared_ptr<DenialSubscription>& subscription);

 private:
  void publish(const DenialUpdate& update);

  std::atomic<uint64_t> total_{0};
  // Checked without the lock so the denial path costs one load when nobody watches.
  std::atomic<size_t> subscriber_count_{0};
  std::mutex subscribers_mutex_;
  std::vector<std::shared_ptr<DenialSubscription>> subscribers_;

  using Key = std::tuple<std::string, uint16_t, std::string>;
  mutable std::mutex mutex_;
  std::map<Key, DenialSummary> window_;
  uint64_t overflow_ = 0;
};

}  // namespace openshell::proxy
