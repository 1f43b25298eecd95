// OCSF names for the event model's numbers, and the Event builder methods.
#include "openshell/core/event.hpp"

#include <arpa/inet.h>

#include <array>
#include <string>

#include "openshell/core/clock.hpp"

namespace openshell::core {
namespace {

constexpr std::string_view kUnknown = "Unknown";
constexpr std::string_view kOther = "Other";

// Activity captions indexed by id (1-based lists; 0 and 99 are common to every class).
template <std::size_t N>
std::string_view pick(const std::array<std::string_view, N>& names, uint8_t id) {
  if (id == 0) return kUnknown;
  if (id == 99) return kOther;
  return id <= N ? names[id - 1] : kUnknown;
}

bool is_ip_literal(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return false;
  std::array<char, INET6_ADDRSTRLEN + 1> buffer{};
  text.copy(buffer.data(), text.size());
  std::array<unsigned char, 16> bytes{};
  const int family = text.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
  return inet_pton(family, buffer.data(), bytes.data()) == 1;
}

}  // namespace

std::string_view class_name(EventClass cls) {
  switch (cls) {
    case EventClass::kProcessActivity:
      return "Process Activity";
    case EventClass::kDetectionFinding:
      return "Detection Finding";
    case EventClass::kNetworkActivity:
      return "Network Activity";
    case EventClass::kHttpActivity:
      return "HTTP Activity";
    case EventClass::kDeviceConfigStateChange:
      return "Device Config State Change";
    case EventClass::kApplicationLifecycle:
      return "Application Lifecycle";
  }
  return kUnknown;
}

int category_uid(EventClass cls) {
  return static_cast<int>(cls) / 1000;
}

std::string_view category_name(EventClass cls) {
  switch (category_uid(cls)) {
    case 1:
      return "System Activity";
    case 2:
      return "Findings";
    case 4:
      return "Network Activity";
    case 5:
      return "Discovery";
    case 6:
      return "Application Activity";
    default:
      return kUnknown;
  }
}

std::string_view activity_name(EventClass cls, uint8_t activity_id) {
  static constexpr std::array<std::string_view, 7> kNetwork = {"Open",   "Close",   "Reset", "Fail",
                                                               "Refuse", "Traffic", "Listen"};
  static constexpr std::array<std::string_view, 9> kHttp = {
      "Connect", "Delete", "Get", "Head", "Options", "Post", "Put", "Trace", "Patch"};
  static constexpr std::array<std::string_view, 5> kProcess = {"Launch", "Terminate", "Open",
                                                               "Inject", "Set User ID"};
  static constexpr std::array<std::string_view, 3> kFinding = {"Create", "Update", "Close"};
  static constexpr std::array<std::string_view, 2> kConfig = {"Log", "Collect"};
  static constexpr std::array<std::string_view, 8> kApp = {
      "Install", "Remove", "Start", "Stop", "Restart", "Enable", "Disable", "Update"};
  switch (cls) {
    case EventClass::kProcessActivity:
      return pick(kProcess, activity_id);
    case EventClass::kDetectionFinding:
      return pick(kFinding, activity_id);
    case EventClass::kNetworkActivity:
      return pick(kNetwork, activity_id);
    case EventClass::kHttpActivity:
      return pick(kHttp, activity_id);
    case EventClass::kDeviceConfigStateChange:
      return pick(kConfig, activity_id);
    case EventClass::kApplicationLifecycle:
      return pick(kApp, activity_id);
  }
  return kUnknown;
}

std::string_view severity_name(Severity severity) {
  switch (severity) {
    case Severity::kUnknown:
      return kUnknown;
    case Severity::kInformational:
      return "Informational";
    case Severity::kLow:
      return "Low";
    case Severity::kMedium:
      return "Medium";
    case Severity::kHigh:
      return "High";
    case Severity::kCritical:
      return "Critical";
    case Severity::kFatal:
      return "Fatal";
  }
  return kUnknown;
}

std::string_view status_name(Status status) {
  switch (status) {
    case Status::kUnknown:
      return kUnknown;
    case Status::kSuccess:
      return "Success";
    case Status::kFailure:
      return "Failure";
  }
  return kUnknown;
}

std::string_view action_name(Action action) {
  switch (action) {
    case Action::kUnknown:
      return kUnknown;
    case Action::kAllowed:
      return "Allowed";
    case Action::kDenied:
      return "Denied";
  }
  return kUnknown;
}

std::string_view disposition_name(Disposition disposition) {
  switch (disposition) {
    case Disposition::kUnknown:
      return kUnknown;
    case Disposition::kAllowed:
      return "Allowed";
    case Disposition::kBlocked:
      return "Blocked";
    case Disposition::kDetected:
      return "Detected";
    case Disposition::kLogged:
      return "Logged";
    case Disposition::kRejected:
      return "Rejected";
  }
  return kUnknown;
}

std::string_view confidence_name(Confidence confidence) {
  switch (confidence) {
    case Confidence::kUnknown:
      return kUnknown;
    case Confidence::kLow:
      return "Low";
    case Confidence::kMedium:
      return "Medium";
    case Confidence::kHigh:
      return "High";
  }
  return kUnknown;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

std::optional<Level> parse_level(std::string_view text) {
  if (text == "debug") return Level::kDebug;
  if (text == "info") return Level::kInfo;
  if (text == "warn" || text == "warning") return Level::kWarn;
  if (text == "error") return Level::kError;
  return std::nullopt;
}

Level level_for(Severity severity) {
  switch (severity) {
    case Severity::kUnknown:
    case Severity::kInformational:
      return Level::kInfo;
    case Severity::kLow:
    case Severity::kMedium:
      return Level::kWarn;
    case Severity::kHigh:
    case Severity::kCritical:
    case Severity::kFatal:
      return Level::kError;
  }
  return Level::kInfo;
}

Event::Event(EventClass cls, uint8_t activity)
    : event_class(cls), activity_id(activity), time_ms(now_ms()) {}

Event Event::network(NetworkActivity activity) {
  return Event(EventClass::kNetworkActivity, static_cast<uint8_t>(activity));
}
Event Event::http_activity(HttpActivity activity) {
  return Event(EventClass::kHttpActivity, static_cast<uint8_t>(activity));
}
Event Event::process_activity(ProcessActivity activity) {
  return Event(EventClass::kProcessActivity, static_cast<uint8_t>(activity));
}
Event Event::detection(FindingActivity activity) {
  return Event(EventClass::kDetectionFinding, static_cast<uint8_t>(activity));
}
Event Event::config_change(ConfigActivity activity) {
  return Event(EventClass::kDeviceConfigStateChange, static_cast<uint8_t>(activity));
}
Event Event::lifecycle(AppActivity activity) {
  return Event(EventClass::kApplicationLifecycle, static_cast<uint8_t>(activity));
}

Event& Event::with_severity(Severity value) & {
  severity = value;
  level = level_for(value);
  return *this;
}
Event& Event::with_level(Level value) & {
  level = value;
  return *this;
}
Event& Event::with_status(Status value) & {
  status = value;
  return *this;
}
Event& Event::with_action(Action value, Disposition disp) & {
  action = value;
  disposition = disp;
  return *this;
}
Event& Event::allowed() & {
  action = Action::kAllowed;
  disposition = Disposition::kAllowed;
  status = Status::kSuccess;
  return *this;
}
Event& Event::denied() & {
  action = Action::kDenied;
  disposition = Disposition::kBlocked;
  status = Status::kFailure;
  if (severity < Severity::kMedium) with_severity(Severity::kMedium);
  return *this;
}
Event& Event::with_message(std::string_view value) & {
  message.assign(value);
  return *this;
}
Event& Event::with_reason(std::string_view value) & {
  status_detail.assign(value);
  return *this;
}
Event& Event::with_dst(std::string_view host, uint16_t port) & {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (is_ip_literal(host)) {
    dst.ip.assign(host);
  } else {
    dst.domain.assign(host);
  }
  dst.port = port;
  return *this;
}
Event& Event::with_dst_ip(std::string_view ip) & {
  dst.ip.assign(ip);
  return *this;
}
Event& Event::with_src(std::string_view ip, uint16_t port) & {
  src.ip.assign(ip);
  src.port = port;
  return *this;
}
Event& Event::with_protocol(std::string_view value) & {
  protocol.assign(value);
  return *this;
}
Event& Event::with_actor(std::string_view exe, int pid) & {
  actor.name.assign(exe);
  actor.pid = pid;
  return *this;
}
Event& Event::with_actor(ProcessInfo value) & {
  actor = std::move(value);
  return *this;
}
Event& Event::with_process(ProcessInfo value) & {
  process = std::move(value);
  return *this;
}
Event& Event::with_rule(std::string_view name, std::string_view type) & {
  rule.name.assign(name);
  rule.type.assign(type);
  return *this;
}
Event& Event::with_http(std::string_view method, std::string_view scheme, std::string_view host,
                        uint16_t port, std::string_view path) & {
  http = HttpRequest{std::string(method), std::string(scheme), std::string(host), port,
                     std::string(redact_query(path))};
  return *this;
}
Event& Event::with_http_status(int code) & {
  http_status = code;
  return *this;
}
Event& Event::with_traffic(uint64_t bytes_in, uint64_t bytes_out) & {
  traffic = Traffic{bytes_in, bytes_out};
  return *this;
}
Event& Event::with_duration_ms(int64_t value) & {
  duration_ms = value;
  return *this;
}
Event& Event::with_finding(Finding value) & {
  finding = std::move(value);
  return *this;
}
Event& Event::with_cid(CorrelationId value) & {
  correlation_id = value;
  return *this;
}
Event& Event::with_time_ms(int64_t value) & {
  time_ms = value;
  return *this;
}
Event& Event::with_field(std::string_view key, std::string_view value) & {
  for (auto& [k, v] : unmapped) {
    if (k == key) {
      v.assign(value);
      return *this;
    }
  }
  unmapped.emplace_back(std::string(key), std::string(value));
  return *this;
}

const std::string* Event::field(std::string_view key) const {
  for (const auto& [k, v] : unmapped) {
    if (k == key) return &v;
  }
  return nullptr;
}

}  // namespace openshell::core
