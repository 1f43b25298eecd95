// The end-of-run denial summary of `openshell sandbox`: the proxy flushes a summary per
// (host, port, binary) every window; this adds the windows up for the whole run.
#include "denial_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "openshell/core/event.hpp"

namespace openshell::sandbox {

namespace {

// How long the collector waits for an update before looking again; close() wakes it anyway.
constexpr std::chrono::milliseconds kPollInterval{1000};

void merge_into(proxy::DenialSummary& total, const proxy::DenialSummary& window) {
  total.count += window.count;
  total.last_seen_ms = std::max(total.last_seen_ms, window.last_seen_ms);
  auto& reasons = total.sample_reasons;
  for (const std::string& reason : window.sample_reasons) {
    if (reasons.size() < proxy::DenialAggregator::kMaxSampleReasons &&
        std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) {
      reasons.push_back(reason);
    }
  }
}

// Text sinks get the line alone, without the event's decorations, so the summary reads as one at
// the end of a terminal session; JSON sinks (and any other) get the structured event.
void emit_summary_line(const core::Logger& log, const core::Event& event) {
  if (!log.enabled(event.level)) return;
  for (const auto& sink : log.sinks()) {
    auto* fd_sink = dynamic_cast<core::FdSink*>(sink.get());
    if (fd_sink != nullptr && fd_sink->format() == core::LogFormat::kText) {
      fd_sink->write_line(event.message + "\n");
    } else {
      sink->write(event);
    }
  }
}

}  // namespace

DenialTally::DenialTally(proxy::DenialAggregator& denials)
    : denials_(denials), subscription_(denials.subscribe()) {
  thread_ = std::thread([this] { collect(); });
}

DenialTally::~DenialTally() {
  stop();
}

void DenialTally::collect() {
  for (;;) {
    std::optional<proxy::DenialUpdate> update = subscription_->pop(kPollInterval);
    if (!update) {
      if (subscription_->closed()) return;
      continue;
    }
    lost_ += update->dropped;
    if (update->kind != proxy::DenialUpdate::Kind::kSummary) continue;
    const proxy::DenialSummary& summary = update->summary;
    Key key{summary.host, summary.port, summary.binary};
    auto [it, inserted] = merged_.try_emplace(std::move(key), summary);
    if (!inserted) merge_into(it->second, summary);
  }
}

void DenialTally::stop() {
  if (!thread_.joinable()) return;
  subscription_->close();
  thread_.join();
  denials_.unsubscribe(subscription_);
}

void DenialTally::report(const core::Logger& log) {
  stop();
  for (const auto& [key, summary] : merged_) {
    const std::string reasons = fmt::format("{}", fmt::join(summary.sample_reasons, " | "));
    emit_summary_line(
        log, core::Event::network(core::NetworkActivity::kRefuse)
                 .denied()
                 .with_level(core::Level::kWarn)
                 .with_message(fmt::format("denial summary: {}:{} binary={} count={} stage={}: {}",
                                           summary.host, summary.port, summary.binary,
                                           summary.count, summary.stage, reasons))
                 .with_dst(summary.host, summary.port)
                 .with_reason(reasons)
                 .with_field("scope", "run")
                 .with_field("binary", summary.binary)
                 .with_field("denial_stage", summary.stage)
                 .with_field("count", std::to_string(summary.count))
                 .with_field("first_seen_ms", std::to_string(summary.first_seen_ms))
                 .with_field("last_seen_ms", std::to_string(summary.last_seen_ms)));
  }
  if (const uint64_t untracked = denials_.overflow(); untracked > 0) {
    log.warn("denial summary: {} more denial(s) to destinations past the tracking limit",
             untracked);
  }
  if (lost_ > 0) {
    log.warn("denial summary: {} update(s) were lost; the counts above may be low", lost_);
  }
}

}  // namespace openshell::sandbox
