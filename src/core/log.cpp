// Logger, fd and callback sinks, and the process-wide default logger.
#include "openshell/core/log.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "openshell/core/event_format.hpp"

namespace openshell::core {
namespace {

// A per-thread render buffer that grew past this (one huge event) is released afterwards rather
// than kept for the thread's lifetime.
constexpr std::size_t kMaxRetainedBuffer = std::size_t{64} * 1024;
// How long one line may wait for a full non-blocking fd (one a child switched to O_NONBLOCK)
// before it is dropped. Bounded because the sink's mutex is held meanwhile.
constexpr int kWriteStallMs = 100;

bool colour_allowed(int fd) {
  if (isatty(fd) != 1) return false;
  // Read once at sink creation, before other threads exist (getenv is not thread-safe vs setenv).
  const char* no_colour = std::getenv("NO_COLOR");  // NOLINT(concurrency-mt-unsafe)
  if (no_colour != nullptr && *no_colour != '\0') return false;
  const char* term = std::getenv("TERM");  // NOLINT(concurrency-mt-unsafe)
  return term == nullptr || std::strcmp(term, "dumb") != 0;
}

std::atomic<Logger*> g_default{nullptr};

// Loggers are never destroyed once installed: references handed out by default_logger() must stay
// valid, also for threads still logging while static destructors run at exit.
Logger& fallback_logger() {
  static Logger* const logger = [] {
    auto* created = new Logger(Level::kInfo);  // NOLINT(cppcoreguidelines-owning-memory)
    created->add_sink(FdSink::for_stderr(LogFormat::kAuto));
    return created;
  }();
  return *logger;
}

std::mutex& installed_mutex() {
  static auto* mutex = new std::mutex;  // NOLINT(cppcoreguidelines-owning-memory)
  return *mutex;
}
std::vector<std::shared_ptr<Logger>>& installed_loggers() {
  static auto* loggers = new std::vector<std::shared_ptr<Logger>>;  // NOLINT
  return *loggers;
}

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view text) {
  if (text == "auto") return LogFormat::kAuto;
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return std::nullopt;
}

std::string_view log_format_name(LogFormat format) {
  switch (format) {
    case LogFormat::kAuto:
      return "auto";
    case LogFormat::kText:
      return "text";
    case LogFormat::kJson:
      return "json";
  }
  return "auto";
}

LogFormat resolve_log_format(LogFormat requested, int fd) {
  if (requested != LogFormat::kAuto) return requested;
  return isatty(fd) == 1 ? LogFormat::kText : LogFormat::kJson;
}

std::shared_ptr<FdSink> FdSink::for_stderr(LogFormat format) {
  const LogFormat resolved = resolve_log_format(format, STDERR_FILENO);
  const bool colour = resolved == LogFormat::kText && colour_allowed(STDERR_FILENO);
  return std::make_shared<FdSink>(STDERR_FILENO, false, resolved, colour);
}

Result<std::shared_ptr<FdSink>> FdSink::open_file(const std::string& path, LogFormat format) {
  // 0600: events name hosts, paths and binaries of the sandboxed workload.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) return Error::from_errno("open " + path);
  const LogFormat resolved = format == LogFormat::kText ? LogFormat::kText : LogFormat::kJson;
  return std::make_shared<FdSink>(fd, true, resolved, false);
}

FdSink::FdSink(int fd, bool owns_fd, LogFormat format, bool colour)
    : fd_(fd),
      owns_fd_(owns_fd),
      format_(format == LogFormat::kText ? LogFormat::kText : LogFormat::kJson),
      colour_(colour && format_ == LogFormat::kText) {}

FdSink::~FdSink() {
  if (owns_fd_) ::close(fd_);
}

void FdSink::write(const Event& event) {
  thread_local std::string buffer;
  buffer.clear();
  if (format_ == LogFormat::kText) {
    render_text(event, buffer, colour_);
  } else {
    render_json(event, buffer);
  }
  write_line(buffer);
  if (buffer.capacity() > kMaxRetainedBuffer) std::string().swap(buffer);
}

void FdSink::write_line(std::string_view line) {
  const std::lock_guard<std::mutex> lock(mutex_);
  std::size_t done = 0;
  // One write(2) normally; the loop only finishes a short write (signal, full pipe) while still
  // holding the lock, so no other line can land in the middle.
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {  // EWOULDBLOCK is the same value on Linux
      pollfd waiter{fd_, POLLOUT, 0};
      if (::poll(&waiter, 1, kWriteStallMs) > 0) continue;
    }
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
}

Logger& Logger::add_sink(std::shared_ptr<LogSink> sink) {
  if (sink) sinks_.push_back(std::move(sink));
  return *this;
}

void Logger::emit(const Event& event) const noexcept {
  if (!enabled(event.level)) return;
  for (const auto& sink : sinks_) {
    try {
      sink->write(event);
    } catch (...) {  // NOLINT(bugprone-empty-catch): a sink's failure must not reach the proxy
    }
  }
}

void Logger::log(Level level, std::string_view message) const {
  if (!enabled(level)) return;
  emit(events::diagnostic(level, message));
}

Result<std::shared_ptr<Logger>> make_logger(const LogOptions& options) {
  auto logger = std::make_shared<Logger>(options.level);
  if (options.file.empty()) {
    logger->add_sink(FdSink::for_stderr(options.format));
  } else {
    auto sink = FdSink::open_file(options.file, options.format);
    if (!sink) return sink.error();
    logger->add_sink(std::move(sink).value());
  }
  return logger;
}

Logger& default_logger() {
  Logger* current = g_default.load(std::memory_order_acquire);
  if (current != nullptr) return *current;
  return fallback_logger();
}

void set_default_logger(std::shared_ptr<Logger> logger) {
  if (!logger) return;
  Logger* raw = logger.get();
  {
    const std::lock_guard<std::mutex> lock(installed_mutex());
    installed_loggers().push_back(std::move(logger));
  }
  g_default.store(raw, std::memory_order_release);
}

}  // namespace openshell::core
