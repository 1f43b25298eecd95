// Logger and sinks: every Event goes to stderr or --log-file as one text or JSON line (DESIGN.md
// "Events and logs"). Safe to call from any thread; lines never interleave.
#pragma once

#include <fmt/core.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "openshell/core/event.hpp"
#include "openshell/core/events.hpp"
#include "openshell/core/result.hpp"

namespace openshell::core {

// --log-format: auto = text on a terminal, JSON lines otherwise.
enum class LogFormat : uint8_t { kAuto, kText, kJson };
std::optional<LogFormat> parse_log_format(std::string_view text);  // "auto" | "text" | "json"
std::string_view log_format_name(LogFormat format);
// Resolves kAuto for `fd` (isatty); kText and kJson are returned unchanged.
LogFormat resolve_log_format(LogFormat requested, int fd);

// Receives every event that passes the logger's threshold. write() is called concurrently from
// many threads and must not block for long.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void write(const Event& event) = 0;
};

// Renders each event to a line and hands it to the fd with a single write(2) under a mutex, so
// lines from different threads never interleave. Rendering happens outside the lock, in a
// per-thread buffer (no allocation per event once warm).
class FdSink final : public LogSink {
 public:
  // stderr (not closed by the sink). Colour when the format is text, stderr is a terminal and
  // neither NO_COLOR nor TERM=dumb is set.
  static std::shared_ptr<FdSink> for_stderr(LogFormat format);
  // Appends to `path` (created 0600; O_APPEND|O_CLOEXEC), never coloured; kAuto means JSON.
  static Result<std::shared_ptr<FdSink>> open_file(const std::string& path, LogFormat format);

  // `format` must be resolved (kText or kJson); kAuto is treated as kJson.
  FdSink(int fd, bool owns_fd, LogFormat format, bool colour);
  ~FdSink() override;
  FdSink(const FdSink&) = delete;
  FdSink& operator=(const FdSink&) = delete;

  void write(const Event& event) override;
  // Writes an already rendered line (must end in '\n') as write() would.
  void write_line(std::string_view line);

  LogFormat format() const { return format_; }
  bool colour() const { return colour_; }
  // Lines lost to write errors (EPIPE, ENOSPC, a non-blocking fd that stayed full): logging drops
  // rather than stalls the proxy.
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  int fd_;
  bool owns_fd_;
  LogFormat format_;
  bool colour_;
  std::mutex mutex_;  // held only around the write(2) of one line
  std::atomic<uint64_t> dropped_{0};
};

// Hands each event to a function (denial aggregation, control streams, tests). The function is
// called concurrently from many threads and must do its own locking.
class CallbackSink final : public LogSink {
 public:
  explicit CallbackSink(std::function<void(const Event&)> callback)
      : callback_(std::move(callback)) {}
  void write(const Event& event) override { callback_(event); }

 private:
  std::function<void(const Event&)> callback_;
};

class Logger {
 public:
  explicit Logger(Level threshold = Level::kInfo) : threshold_(threshold) {}

  // Setup only: add every sink before the logger is shared between threads.
  Logger& add_sink(std::shared_ptr<LogSink> sink);
  const std::vector<std::shared_ptr<LogSink>>& sinks() const { return sinks_; }

  // The threshold may change at any time (e.g. from the control API).
  void set_threshold(Level level) { threshold_.store(level, std::memory_order_relaxed); }
  Level threshold() const { return threshold_.load(std::memory_order_relaxed); }
  // Check before building an expensive debug event.
  bool enabled(Level level) const { return level >= threshold(); }

  // Sends the event to every sink if its level passes the threshold. Never throws: a failing
  // sink loses the line, the caller carries on.
  void emit(const Event& event) const noexcept;

  // Plain diagnostics ("LEVEL message" in text, Application Lifecycle in JSON). The format
  // string is checked at compile time; pass runtime text as log(level, text) or ("{}", text).
  void log(Level level, std::string_view message) const;
  template <class... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(Level::kDebug))
      log(Level::kDebug, fmt::format(format, std::forward<Args>(args)...));
  }
  template <class... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(Level::kInfo)) log(Level::kInfo, fmt::format(format, std::forward<Args>(args)...));
  }
  template <class... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(Level::kWarn)) log(Level::kWarn, fmt::format(format, std::forward<Args>(args)...));
  }
  template <class... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(Level::kError))
      log(Level::kError, fmt::format(format, std::forward<Args>(args)...));
  }

 private:
  std::atomic<Level> threshold_;
  std::vector<std::shared_ptr<LogSink>> sinks_;
};

// What --log-format, --log-file and --log-level ask for.
struct LogOptions {
  LogFormat format = LogFormat::kAuto;
  std::string file;  // empty: stderr
  Level level = Level::kInfo;
};
// The logger those flags describe: one sink, the file if given, else stderr.
Result<std::shared_ptr<Logger>> make_logger(const LogOptions& options);

// The process-wide logger: one atomic load. Until replaced it logs to stderr at info (text on a
// terminal, JSON otherwise).
Logger& default_logger();
// Replaces it; call at startup. The previous logger stays alive (threads may hold a reference).
void set_default_logger(std::shared_ptr<Logger> logger);

inline void emit(const Event& event) {
  default_logger().emit(event);
}

}  // namespace openshell::core
