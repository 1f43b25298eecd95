// The human one-line form of an event (proxy-spec §7.3 shorthand): what an operator reads on a
// terminal. Values pass through append_text_safe so a peer cannot forge lines or drive the TTY.
#include <array>
#include <charconv>
#include <string>

#include "escape.hpp"
#include "openshell/core/clock.hpp"
#include "openshell/core/event_format.hpp"

namespace openshell::core {
namespace {

namespace ansi {
constexpr std::string_view kReset = "\x1b[0m";
constexpr std::string_view kDim = "\x1b[2m";
constexpr std::string_view kRed = "\x1b[31m";
constexpr std::string_view kBoldRed = "\x1b[1;31m";
constexpr std::string_view kGreen = "\x1b[32m";
constexpr std::string_view kYellow = "\x1b[33m";
constexpr std::string_view kCyan = "\x1b[36m";
}  // namespace ansi

class LineWriter {
 public:
  LineWriter(std::string& out, bool colour) : out_(out), colour_(colour) {}

  void raw(std::string_view text) { out_.append(text); }
  void ch(char c) { out_.push_back(c); }
  void safe(std::string_view text) { detail::append_text_safe(out_, text); }
  void number(int64_t value) {
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value);
    out_.append(digits.data(), result.ptr);
  }
  void unumber(uint64_t value) {
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value);
    out_.append(digits.data(), result.ptr);
  }
  // Our own upper-case label ("OPEN", "SET_USER_ID"): caption text, never peer data.
  void upper(std::string_view caption) {
    for (const char c : caption) {
      out_.push_back(c == ' '                 ? '_'
                     : (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A')
                                              : c);
    }
  }
  void coloured(std::string_view colour, std::string_view text) {
    if (colour_ && !colour.empty()) {
      out_.append(colour).append(text).append(ansi::kReset);
    } else {
      out_.append(text);
    }
  }

 private:
  std::string& out_;
  bool colour_;
};

std::string_view class_tag(EventClass cls) {
  switch (cls) {
    case EventClass::kProcessActivity:
      return "PROC";
    case EventClass::kDetectionFinding:
      return "FINDING";
    case EventClass::kNetworkActivity:
      return "NET";
    case EventClass::kHttpActivity:
      return "HTTP";
    case EventClass::kDeviceConfigStateChange:
      return "CONFIG";
    case EventClass::kApplicationLifecycle:
      return "APP";
  }
  return "EVENT";
}

std::string_view severity_tag(Severity severity) {
  switch (severity) {
    case Severity::kUnknown:
    case Severity::kInformational:
      return "[INFO]";
    case Severity::kLow:
      return "[LOW]";
    case Severity::kMedium:
      return "[MED]";
    case Severity::kHigh:
      return "[HIGH]";
    case Severity::kCritical:
      return "[CRIT]";
    case Severity::kFatal:
      return "[FATAL]";
  }
  return "[INFO]";
}

std::string_view severity_colour(Severity severity) {
  switch (severity) {
    case Severity::kUnknown:
    case Severity::kInformational:
      return {};
    case Severity::kLow:
      return ansi::kCyan;
    case Severity::kMedium:
      return ansi::kYellow;
    case Severity::kHigh:
    case Severity::kCritical:
    case Severity::kFatal:
      return ansi::kBoldRed;
  }
  return {};
}

// "ALLOWED", "DENIED", or "AUDIT" for an allowed request that a rule would have denied.
void write_action(LineWriter& line, const Event& event) {
  switch (event.action) {
    case Action::kUnknown:
      return;
    case Action::kAllowed:
      line.ch(' ');
      if (event.disposition == Disposition::kDetected) {
        line.coloured(ansi::kYellow, "AUDIT");
      } else {
        line.coloured(ansi::kGreen, "ALLOWED");
      }
      return;
    case Action::kDenied:
      line.ch(' ');
      line.coloured(ansi::kRed, "DENIED");
      return;
  }
}

// "host:port" (IPv6 bracketed), preferring the name the client asked for.
void write_endpoint(LineWriter& line, const Endpoint& endpoint) {
  const std::string& host = endpoint.domain.empty() ? endpoint.ip : endpoint.domain;
  const bool bracket = host.find(':') != std::string::npos;
  if (bracket) line.ch('[');
  line.safe(host.empty() ? std::string_view("-") : std::string_view(host));
  if (bracket) line.ch(']');
  if (endpoint.port != 0) {
    line.ch(':');
    line.number(endpoint.port);
  }
}

// "/usr/bin/curl(64)"; "-" stands for an unknown binary.
void write_process(LineWriter& line, const ProcessInfo& process) {
  line.safe(process.name.empty() ? std::string_view("-") : std::string_view(process.name));
  if (process.pid != 0) {
    line.ch('(');
    line.number(process.pid);
    line.ch(')');
  }
}

void write_rule(LineWriter& line, const Event& event) {
  if (event.rule.name.empty() && event.rule.type.empty()) return;
  line.raw(" [policy:");
  line.safe(event.rule.name.empty() ? std::string_view("-") : std::string_view(event.rule.name));
  line.raw(" engine:");
  line.safe(event.rule.type.empty() ? std::string_view("-") : std::string_view(event.rule.type));
  line.ch(']');
}

void write_tag(LineWriter& line, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  line.raw(" [");
  line.raw(name);
  line.ch(':');
  line.safe(value);
  line.ch(']');
}

void write_message(LineWriter& line, const Event& event) {
  if (event.message.empty()) return;
  line.ch(' ');
  line.safe(event.message);
}

void write_network(LineWriter& line, const Event& event) {
  write_action(line, event);
  if (!event.actor.empty()) {
    line.ch(' ');
    write_process(line, event.actor);
    if (!event.dst.empty()) line.raw(" ->");
  }
  if (!event.dst.empty()) {
    line.ch(' ');
    write_endpoint(line, event.dst);
    if (!event.protocol.empty()) {
      line.ch('/');
      line.safe(event.protocol);
    }
  }
  write_rule(line, event);
  write_tag(line, "reason", event.status_detail);
  if (event.traffic) {
    line.raw(" [in:");
    line.unumber(event.traffic->bytes_in);
    line.raw(" out:");
    line.unumber(event.traffic->bytes_out);
    if (event.duration_ms >= 0) {
      line.raw(" duration:");
      line.number(event.duration_ms);
      line.raw("ms");
    }
    line.ch(']');
  }
  if (event.actor.empty() && event.dst.empty() && event.rule.name.empty()) {
    write_message(line, event);
  }
}

void write_http(LineWriter& line, const Event& event) {
  write_action(line, event);
  if (!event.actor.empty()) {
    line.ch(' ');
    write_process(line, event.actor);
    line.raw(" ->");
  }
  if (event.http) {
    const HttpRequest& request = *event.http;
    line.ch(' ');
    line.safe(request.method);
    line.ch(' ');
    if (!request.scheme.empty()) {
      line.safe(request.scheme);
      line.raw("://");
    }
    write_endpoint(line, Endpoint{request.hostname, {}, request.port});
    line.safe(request.path);
  } else if (!event.dst.empty()) {
    line.ch(' ');
    write_endpoint(line, event.dst);
  } else {
    write_message(line, event);
  }
  if (event.http_status != 0) {
    line.raw(" [status:");
    line.number(event.http_status);
    line.ch(']');
  }
  write_rule(line, event);
  write_tag(line, "reason", event.status_detail);
}

void write_process_line(LineWriter& line, const Event& event) {
  const ProcessInfo& process = event.process.empty() ? event.actor : event.process;
  line.ch(' ');
  write_process(line, process);
  if (process.exit_code) {
    line.raw(" [exit:");
    line.number(*process.exit_code);
    line.ch(']');
  }
  write_tag(line, "cmd", process.cmd_line);
}

void write_finding(LineWriter& line, const Event& event) {
  write_action(line, event);
  if (event.finding) {
    line.raw(" \"");
    line.safe(event.finding->title);
    line.ch('"');
  }
  if (!event.actor.empty()) {
    line.ch(' ');
    write_process(line, event.actor);
    if (!event.dst.empty()) line.raw(" ->");
  }
  if (!event.dst.empty()) {
    line.ch(' ');
    write_endpoint(line, event.dst);
  }
  if (event.finding && event.finding->confidence != Confidence::kUnknown) {
    line.raw(" [confidence:");
    line.raw(confidence_name(event.finding->confidence));
    line.ch(']');
  }
  if (!event.finding || event.message != event.finding->title) write_message(line, event);
  write_tag(line, "reason", event.status_detail);
}

// Application Lifecycle and Device Config State Change: the message carries the content.
void write_plain_class(LineWriter& line, const Event& event) {
  if (event.status == Status::kFailure) {
    line.ch(' ');
    line.coloured(ansi::kRed, "FAILED");
  }
  write_message(line, event);
  write_tag(line, "reason", event.status_detail);
}

void write_unmapped(LineWriter& line, const Event& event) {
  if (event.unmapped.empty()) return;
  line.raw(" [");
  bool first = true;
  for (const auto& [key, value] : event.unmapped) {
    if (!first) line.ch(' ');
    first = false;
    line.safe(key);
    line.ch(':');
    line.safe(value);
  }
  line.ch(']');
}

std::string_view level_tag(Level level) {
  switch (level) {
    case Level::kDebug:
      return "DEBUG";
    case Level::kInfo:
      return "INFO ";
    case Level::kWarn:
      return "WARN ";
    case Level::kError:
      return "ERROR";
  }
  return "INFO ";
}

std::string_view level_colour(Level level) {
  switch (level) {
    case Level::kDebug:
      return ansi::kDim;
    case Level::kInfo:
      return {};
    case Level::kWarn:
      return ansi::kYellow;
    case Level::kError:
      return ansi::kBoldRed;
  }
  return {};
}

void write_line(const Event& event, std::string& out, bool colour) {
  LineWriter line(out, colour);
  if (colour) {
    line.raw(ansi::kDim);
    append_iso8601_ms(out, event.time_ms);
    line.raw(ansi::kReset);
  } else {
    append_iso8601_ms(out, event.time_ms);
  }
  line.ch(' ');

  if (event.diagnostic) {
    line.coloured(level_colour(event.level), level_tag(event.level));
    write_message(line, event);
    write_tag(line, "reason", event.status_detail);
  } else {
    line.raw("OCSF ");
    line.raw(class_tag(event.event_class));
    line.ch(':');
    if (event.event_class == EventClass::kHttpActivity && event.http &&
        event.activity_id == static_cast<uint8_t>(HttpActivity::kOther)) {
      line.safe(event.http->method);  // "HTTP:GET" says more than "HTTP:OTHER"
    } else {
      line.upper(event.activity_label());
    }
    line.ch(' ');
    line.coloured(severity_colour(event.severity), severity_tag(event.severity));
    switch (event.event_class) {
      case EventClass::kNetworkActivity:
        write_network(line, event);
        break;
      case EventClass::kHttpActivity:
        write_http(line, event);
        break;
      case EventClass::kProcessActivity:
        write_process_line(line, event);
        break;
      case EventClass::kDetectionFinding:
        write_finding(line, event);
        break;
      case EventClass::kDeviceConfigStateChange:
      case EventClass::kApplicationLifecycle:
        write_plain_class(line, event);
        break;
    }
  }
  write_unmapped(line, event);
  if (event.correlation_id) {
    line.raw(" cid=");
    event.correlation_id.append_to(out);
  }
}

}  // namespace

void render_text(const Event& event, std::string& out, bool colour) {
  write_line(event, out, colour);
  out.push_back('\n');
}

std::string to_text(const Event& event, bool colour) {
  std::string out;
  out.reserve(256);
  write_line(event, out, colour);
  return out;
}

}  // namespace openshell::core
