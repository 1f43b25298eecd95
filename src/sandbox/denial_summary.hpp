// What `openshell sandbox` reports when its command has ended: every denial of the run, one line
// per (host, port, binary), merged from the proxy's per-window denial summaries.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>

#include "openshell/core/log.hpp"
#include "openshell/proxy/denials.hpp"

namespace openshell::sandbox {

class DenialTally {
 public:
  // Subscribes to `denials` at once (denials recorded earlier are not counted) and drains the
  // subscription on a thread of its own, so a long run loses nothing to the bounded queue.
  explicit DenialTally(proxy::DenialAggregator& denials);
  ~DenialTally();
  DenialTally(const DenialTally&) = delete;
  DenialTally& operator=(const DenialTally&) = delete;

  // Call once the proxy has stopped (its shutdown flushes the last window): stops collecting and
  // logs the run's denials at warn, one event per (host, port, binary); nothing when none.
  void report(const core::Logger& log);

 private:
  void collect();
  void stop();

  using Key = std::tuple<std::string, uint16_t, std::string>;
  proxy::DenialAggregator& denials_;
  std::shared_ptr<proxy::DenialSubscription> subscription_;
  std::map<Key, proxy::DenialSummary> merged_;  // written by thread_ only until it is joined
  uint64_t lost_ = 0;                           // updates the queue dropped (slow reader)
  std::thread thread_;
};

}  // namespace openshell::sandbox
