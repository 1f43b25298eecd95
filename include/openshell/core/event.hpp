// The event model: every decision and lifecycle step is one OCSF 1.8.0 event (DESIGN.md "Events
// and logs", proxy-spec §7.3). Plain values, cheap to build on the hot path; sinks render them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "openshell/core/correlation.hpp"

namespace openshell::core {

inline constexpr std::string_view kOcsfVersion = "1.8.0";
inline constexpr std::string_view kProductName = "openshell";
inline constexpr std::string_view kVendorName = "openshell";

// The OCSF classes openshell emits; the value is the class_uid.
enum class EventClass : uint16_t {
  kProcessActivity = 1007,
  kDetectionFinding = 2004,
  kNetworkActivity = 4001,
  kHttpActivity = 4002,
  kDeviceConfigStateChange = 5019,
  kApplicationLifecycle = 6002,
};

// Activity ids, one enumeration per class (OCSF numbers them per class). 0 is Unknown, 99 Other.
enum class NetworkActivity : uint8_t {
  kOpen = 1,
  kClose = 2,
  kReset = 3,
  kFail = 4,
  kRefuse = 5,
  kTraffic = 6,
  kListen = 7,
  kOther = 99
};
enum class HttpActivity : uint8_t {
  kConnect = 1,
  kDelete = 2,
  kGet = 3,
  kHead = 4,
  kOptions = 5,
  kPost = 6,
  kPut = 7,
  kTrace = 8,
  kPatch = 9,
  kOther = 99
};
enum class ProcessActivity : uint8_t { kLaunch = 1, kTerminate = 2, kOpen = 3, kOther = 99 };
enum class FindingActivity : uint8_t { kCreate = 1, kUpdate = 2, kClose = 3, kOther = 99 };
enum class ConfigActivity : uint8_t { kLog = 1, kCollect = 2, kOther = 99 };
enum class AppActivity : uint8_t {
  kInstall = 1,
  kRemove = 2,
  kStart = 3,
  kStop = 4,
  kRestart = 5,
  kEnable = 6,
  kDisable = 7,
  kUpdate = 8,
  kOther = 99
};

enum class Severity : uint8_t {
  kUnknown = 0,
  kInformational = 1,
  kLow = 2,
  kMedium = 3,
  kHigh = 4,
  kCritical = 5,
  kFatal = 6,
};
enum class Status : uint8_t { kUnknown = 0, kSuccess = 1, kFailure = 2 };
enum class Action : uint8_t { kUnknown = 0, kAllowed = 1, kDenied = 2 };
// The dispositions openshell produces (OCSF numbering, which has gaps).
enum class Disposition : uint8_t {
  kUnknown = 0,
  kAllowed = 1,
  kBlocked = 2,
  kDetected = 15,  // audit mode: a rule would deny, the request went through
  kLogged = 17,
  kRejected = 25,
};
enum class Confidence : uint8_t { kUnknown = 0, kLow = 1, kMedium = 2, kHigh = 3 };

// Log threshold. Not an OCSF field: derived from the severity unless set, so `--log-level warn`
// keeps denials (Medium) and drops allowed connections (Informational).
enum class Level : uint8_t { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

std::string_view class_name(EventClass cls);
int category_uid(EventClass cls);
std::string_view category_name(EventClass cls);
std::string_view activity_name(EventClass cls, uint8_t activity_id);
std::string_view severity_name(Severity severity);
std::string_view status_name(Status status);
std::string_view action_name(Action action);
std::string_view disposition_name(Disposition disposition);
std::string_view confidence_name(Confidence confidence);
std::string_view level_name(Level level);  // "debug", "info", "warn", "error"
std::optional<Level> parse_level(std::string_view text);
Level level_for(Severity severity);

struct Endpoint {
  std::string domain;  // host name as requested, when there is one
  std::string ip;      // textual address, when known
  uint16_t port = 0;   // 0: not known

  bool empty() const { return domain.empty() && ip.empty() && port == 0; }
};

struct ProcessInfo {
  std::string name;  // the executable's path (as the reference does)
  int pid = 0;       // 0: not known
  std::string cmd_line;
  std::string sha256;                // hex digest of the executable, when computed
  std::vector<std::string> lineage;  // ancestors' executable paths, nearest first
  std::optional<int> exit_code;      // Process Activity Terminate only

  bool empty() const { return name.empty() && pid == 0; }
};

struct FirewallRule {
  std::string name;  // the policy key, or "-" when no policy matched
  std::string type;  // opa | ssrf | l7 | tls | credentials | nftables | request-authority
};

struct HttpRequest {
  std::string method;
  std::string scheme;  // "http" | "https"
  std::string hostname;
  uint16_t port = 0;
  std::string path;  // always without its query (see redact_query)
};

struct Traffic {
  uint64_t bytes_in = 0;   // destination -> source (upstream to client)
  uint64_t bytes_out = 0;  // source -> destination (client to upstream)
};

struct Finding {
  std::string uid;  // stable id of the detection, e.g. "bypass-detect"
  std::string title;
  std::string desc;
  Confidence confidence = Confidence::kUnknown;
  bool is_alert = false;
  std::string remediation;
  std::vector<std::pair<std::string, std::string>> evidence;  // rendered as evidences[0].data
};

// Drops the query string (and fragment) of a URL or request target: logs never carry them, since
// they are where tokens live (proxy-spec §4.4). Returns a view into `url_or_path`.
constexpr std::string_view redact_query(std::string_view url_or_path) {
  return url_or_path.substr(0, url_or_path.find_first_of("?#"));
}

// One event. Fields left empty/unknown are omitted from the output. Build it with a named
// constructor (or a factory in `events::`) and chain `with_*` calls:
//
//   Event e = Event::network(NetworkActivity::kOpen).with_dst("example.com", 443).with_cid(cid);
//
// Bind chains on a temporary to a value (`Event e = ...` or `auto e = ...`), never to `auto&&`.
struct Event {
  EventClass event_class = EventClass::kApplicationLifecycle;
  uint8_t activity_id = 0;
  Severity severity = Severity::kInformational;
  Level level = Level::kInfo;
  Status status = Status::kUnknown;
  Action action = Action::kUnknown;
  Disposition disposition = Disposition::kUnknown;
  int64_t time_ms = 0;  // set to now by the constructor
  std::string message;
  std::string status_detail;  // the deny reason
  Endpoint dst;
  Endpoint src;
  std::string protocol;  // connection_info.protocol_name ("tcp", "udp"), when relevant
  ProcessInfo actor;     // actor.process: who made the connection / launched the process
  ProcessInfo process;   // Process Activity: the process launched or terminated
  FirewallRule rule;
  std::optional<HttpRequest> http;
  int http_status = 0;  // http_response.code; 0: none
  std::optional<Traffic> traffic;
  int64_t duration_ms = -1;  // connection lifetime on close; -1: not set
  std::optional<Finding> finding;
  CorrelationId correlation_id;
  std::vector<std::pair<std::string, std::string>> unmapped;  // extra string fields, in order
  // A plain diagnostic message (Logger::info & co.) rather than an OCSF decision or lifecycle
  // step: text sinks show it as "LEVEL message"; JSON still gets an Application Lifecycle event.
  bool diagnostic = false;

  Event() : Event(EventClass::kApplicationLifecycle, static_cast<uint8_t>(AppActivity::kOther)) {}
  Event(EventClass cls, uint8_t activity);

  static Event network(NetworkActivity activity);
  static Event http_activity(HttpActivity activity);
  static Event process_activity(ProcessActivity activity);
  static Event detection(FindingActivity activity);
  static Event config_change(ConfigActivity activity);
  static Event lifecycle(AppActivity activity);

  std::string_view class_label() const { return class_name(event_class); }
  std::string_view activity_label() const { return activity_name(event_class, activity_id); }

  // Fluent setters: `&` on a named event, `&&` on a temporary (no copies either way).
  Event& with_severity(Severity value) &;  // also sets `level` from the severity
  Event& with_level(Level value) &;
  Event& with_status(Status value) &;
  Event& with_action(Action value, Disposition disp) &;
  Event& allowed() &;  // Allowed / Allowed / Success
  Event& denied() &;   // Denied / Blocked / Failure, and Medium severity unless already higher
  Event& with_message(std::string_view value) &;
  Event& with_reason(std::string_view value) &;             // status_detail
  Event& with_dst(std::string_view host, uint16_t port) &;  // an IP literal goes to `ip`
  Event& with_dst_ip(std::string_view ip) &;  // the resolved address, beside the domain
  Event& with_src(std::string_view ip, uint16_t port) &;
  Event& with_protocol(std::string_view value) &;
  Event& with_actor(std::string_view exe, int pid) &;
  Event& with_actor(ProcessInfo value) &;
  Event& with_process(ProcessInfo value) &;
  Event& with_rule(std::string_view name, std::string_view type) &;
  Event& with_http(std::string_view method, std::string_view scheme, std::string_view host,
                   uint16_t port, std::string_view path) &;  // the path's query is dropped
  Event& with_http_status(int code) &;
  Event& with_traffic(uint64_t bytes_in, uint64_t bytes_out) &;
  Event& with_duration_ms(int64_t value) &;
  Event& with_finding(Finding value) &;
  Event& with_cid(CorrelationId value) &;
  Event& with_time_ms(int64_t value) &;
  Event& with_field(std::string_view key, std::string_view value) &;  // unmapped; replaces a key

  Event&& with_severity(Severity value) && { return std::move(with_severity(value)); }
  Event&& with_level(Level value) && { return std::move(with_level(value)); }
  Event&& with_status(Status value) && { return std::move(with_status(value)); }
  Event&& with_action(Action value, Disposition disp) && {
    return std::move(with_action(value, disp));
  }
  Event&& allowed() && { return std::move(allowed()); }
  Event&& denied() && { return std::move(denied()); }
  Event&& with_message(std::string_view value) && { return std::move(with_message(value)); }
  Event&& with_reason(std::string_view value) && { return std::move(with_reason(value)); }
  Event&& with_dst(std::string_view host, uint16_t port) && {
    return std::move(with_dst(host, port));
  }
  Event&& with_dst_ip(std::string_view ip) && { return std::move(with_dst_ip(ip)); }
  Event&& with_src(std::string_view ip, uint16_t port) && { return std::move(with_src(ip, port)); }
  Event&& with_protocol(std::string_view value) && { return std::move(with_protocol(value)); }
  Event&& with_actor(std::string_view exe, int pid) && { return std::move(with_actor(exe, pid)); }
  Event&& with_actor(ProcessInfo value) && { return std::move(with_actor(std::move(value))); }
  Event&& with_process(ProcessInfo value) && { return std::move(with_process(std::move(value))); }
  Event&& with_rule(std::string_view name, std::string_view type) && {
    return std::move(with_rule(name, type));
  }
  Event&& with_http(std::string_view method, std::string_view scheme, std::string_view host,
                    uint16_t port, std::string_view path) && {
    return std::move(with_http(method, scheme, host, port, path));
  }
  Event&& with_http_status(int code) && { return std::move(with_http_status(code)); }
  Event&& with_traffic(uint64_t bytes_in, uint64_t bytes_out) && {
    return std::move(with_traffic(bytes_in, bytes_out));
  }
  Event&& with_duration_ms(int64_t value) && { return std::move(with_duration_ms(value)); }
  Event&& with_finding(Finding value) && { return std::move(with_finding(std::move(value))); }
  Event&& with_cid(CorrelationId value) && { return std::move(with_cid(value)); }
  Event&& with_time_ms(int64_t value) && { return std::move(with_time_ms(value)); }
  Event&& with_field(std::string_view key, std::string_view value) && {
    return std::move(with_field(key, value));
  }

  // The value of an unmapped field, or nullptr.
  const std::string* field(std::string_view key) const;
};

}  // namespace openshell::core
