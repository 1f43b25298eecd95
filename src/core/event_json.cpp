// OCSF 1.8.0 JSON rendering, written straight into the caller's buffer: no intermediate DOM, no
// allocation once the buffer has grown (this runs for every decision).
#include <unistd.h>

#include <array>
#include <charconv>
#include <climits>
#include <string>

#include "escape.hpp"
#include "openshell/core/event_format.hpp"
#include "openshell_config.hpp"

namespace openshell::core {
namespace {

// Writes the members of one JSON object; the destructor closes it, so nesting follows scopes.
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_.push_back('{'); }
  ~ObjectWriter() { out_.push_back('}'); }
  ObjectWriter(const ObjectWriter&) = delete;
  ObjectWriter& operator=(const ObjectWriter&) = delete;

  void key(std::string_view name) {
    if (!first_) out_.push_back(',');
    first_ = false;
    out_.push_back('"');
    out_.append(name);  // keys are our own constants: no escaping needed
    out_.append("\":");
  }
  void str(std::string_view name, std::string_view value) {
    key(name);
    detail::append_json_string(out_, value);
  }
  // A member whose key is caller data (unmapped fields, evidence), so the key is escaped too.
  void entry(std::string_view name, std::string_view value) {
    if (!first_) out_.push_back(',');
    first_ = false;
    detail::append_json_string(out_, name);
    out_.push_back(':');
    detail::append_json_string(out_, value);
  }
  void str_if(std::string_view name, std::string_view value) {
    if (!value.empty()) str(name, value);
  }
  void num(std::string_view name, int64_t value) {
    key(name);
    append_number(value);
  }
  void unum(std::string_view name, uint64_t value) {
    key(name);
    append_number(value);
  }
  void boolean(std::string_view name, bool value) {
    key(name);
    out_.append(value ? "true" : "false");
  }
  // An id/caption pair such as severity_id + severity.
  void enumeration(std::string_view id_name, std::string_view caption_name, int id,
                   std::string_view caption) {
    num(id_name, id);
    str(caption_name, caption);
  }
  ObjectWriter object(std::string_view name) {
    key(name);
    return ObjectWriter(out_);
  }
  std::string& raw() { return out_; }

 private:
  template <class Int>
  void append_number(Int value) {
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value);
    out_.append(digits.data(), result.ptr);
  }

  std::string& out_;
  bool first_ = true;
};

const std::string& host_name() {
  // Read once: the device of a config change is this host, and uname is a syscall.
  static const std::string name = [] {
    std::array<char, HOST_NAME_MAX + 1> buffer{};
    if (gethostname(buffer.data(), buffer.size() - 1) != 0) return std::string();
    return std::string(buffer.data());
  }();
  return name;
}

void write_endpoint(ObjectWriter& parent, std::string_view name, const Endpoint& endpoint) {
  if (endpoint.empty()) return;
  ObjectWriter object = parent.object(name);
  object.str_if("domain", endpoint.domain);
  object.str_if("ip", endpoint.ip);
  if (endpoint.port != 0) object.num("port", endpoint.port);
}

void write_process(ObjectWriter& parent, std::string_view name, const ProcessInfo& process) {
  ObjectWriter object = parent.object(name);
  object.str_if("name", process.name);
  if (process.pid != 0) object.num("pid", process.pid);
  object.str_if("cmd_line", process.cmd_line);
  if (!process.sha256.empty()) {
    ObjectWriter file = object.object("file");
    file.str("path", process.name);
    const auto slash = process.name.rfind('/');
    file.str("name", slash == std::string::npos ? process.name : process.name.substr(slash + 1));
    file.enumeration("type_id", "type", 1, "Regular File");
    file.key("hashes");
    file.raw().push_back('[');
    {
      ObjectWriter hash(file.raw());
      hash.enumeration("algorithm_id", "algorithm", 3, "SHA-256");
      hash.str("value", process.sha256);
    }
    file.raw().push_back(']');
  }
  if (!process.lineage.empty()) {
    object.key("lineage");
    std::string& out = object.raw();
    out.push_back('[');
    for (std::size_t i = 0; i < process.lineage.size(); ++i) {
      if (i != 0) out.push_back(',');
      detail::append_json_string(out, process.lineage[i]);
    }
    out.push_back(']');
  }
}

void write_finding(ObjectWriter& root, const Finding& finding) {
  {
    ObjectWriter info = root.object("finding_info");
    info.str("uid", finding.uid);
    info.str("title", finding.title);
    info.str_if("desc", finding.desc);
  }
  if (finding.confidence != Confidence::kUnknown) {
    root.enumeration("confidence_id", "confidence", static_cast<int>(finding.confidence),
                     confidence_name(finding.confidence));
  }
  root.boolean("is_alert", finding.is_alert);
  if (!finding.evidence.empty()) {
    root.key("evidences");
    root.raw().push_back('[');
    {
      ObjectWriter evidence(root.raw());
      ObjectWriter data = evidence.object("data");
      for (const auto& [key, value] : finding.evidence)
        data.entry(key, value);
    }
    root.raw().push_back(']');
  }
  if (!finding.remediation.empty()) {
    ObjectWriter remediation = root.object("remediation");
    remediation.str("desc", finding.remediation);
  }
}

void write_event(const Event& event, std::string& out) {
  const auto class_uid = static_cast<int>(event.event_class);
  const std::string_view cls = class_name(event.event_class);
  const std::string_view activity = event.activity_label();

  ObjectWriter root(out);
  root.enumeration("class_uid", "class_name", class_uid, cls);
  root.enumeration("category_uid", "category_name", category_uid(event.event_class),
                   category_name(event.event_class));
  root.enumeration("activity_id", "activity_name", event.activity_id, activity);
  root.num("type_uid", int64_t{class_uid} * 100 + event.activity_id);
  root.key("type_name");
  out.push_back('"');
  out.append(cls).append(": ").append(activity);
  out.push_back('"');
  root.enumeration("severity_id", "severity", static_cast<int>(event.severity),
                   severity_name(event.severity));
  if (event.status != Status::kUnknown) {
    root.enumeration("status_id", "status", static_cast<int>(event.status),
                     status_name(event.status));
  }
  if (event.action != Action::kUnknown) {
    root.enumeration("action_id", "action", static_cast<int>(event.action),
                     action_name(event.action));
  }
  if (event.disposition != Disposition::kUnknown) {
    root.enumeration("disposition_id", "disposition", static_cast<int>(event.disposition),
                     disposition_name(event.disposition));
  }
  root.num("time", event.time_ms);
  root.str_if("message", event.message);
  root.str_if("status_detail", event.status_detail);
  if (event.duration_ms >= 0) root.num("duration", event.duration_ms);

  write_endpoint(root, "dst_endpoint", event.dst);
  write_endpoint(root, "src_endpoint", event.src);
  if (!event.protocol.empty()) {
    ObjectWriter connection = root.object("connection_info");
    connection.str("protocol_name", event.protocol);
  }
  if (!event.actor.empty()) {
    ObjectWriter actor = root.object("actor");
    write_process(actor, "process", event.actor);
  }
  if (!event.process.empty()) write_process(root, "process", event.process);
  if (event.process.exit_code) root.num("exit_code", *event.process.exit_code);
  if (!event.rule.name.empty() || !event.rule.type.empty()) {
    ObjectWriter rule = root.object("firewall_rule");
    rule.str_if("name", event.rule.name);
    rule.str_if("type", event.rule.type);
  }
  if (event.http) {
    ObjectWriter request = root.object("http_request");
    request.str_if("http_method", event.http->method);
    ObjectWriter url = request.object("url");
    url.str_if("scheme", event.http->scheme);
    url.str_if("hostname", event.http->hostname);
    if (event.http->port != 0) url.num("port", event.http->port);
    url.str_if("path", event.http->path);
  }
  if (event.http_status != 0) {
    ObjectWriter response = root.object("http_response");
    response.num("code", event.http_status);
  }
  if (event.traffic) {
    ObjectWriter traffic = root.object("traffic");
    traffic.unum("bytes_in", event.traffic->bytes_in);
    traffic.unum("bytes_out", event.traffic->bytes_out);
    traffic.unum("bytes", event.traffic->bytes_in + event.traffic->bytes_out);
  }
  if (event.finding) write_finding(root, *event.finding);
  if (event.event_class == EventClass::kApplicationLifecycle) {
    ObjectWriter app = root.object("app");
    app.str("name", kProductName);
    app.str("vendor_name", kVendorName);
    app.str("version", OPENSHELL_VERSION);
  }
  if (event.event_class == EventClass::kDeviceConfigStateChange) {
    ObjectWriter device = root.object("device");
    device.str_if("hostname", host_name());
    device.enumeration("type_id", "type", 0, "Unknown");
  }
  {
    ObjectWriter metadata = root.object("metadata");
    metadata.str("version", kOcsfVersion);
    {
      ObjectWriter product = metadata.object("product");
      product.str("name", kProductName);
      product.str("vendor_name", kVendorName);
      product.str("version", OPENSHELL_VERSION);
    }
    if (event.action != Action::kUnknown || event.disposition != Disposition::kUnknown) {
      metadata.key("profiles");
      out.append("[\"security_control\"]");
    }
    if (event.correlation_id) {
      metadata.key("correlation_uid");
      out.push_back('"');
      event.correlation_id.append_to(out);
      out.push_back('"');
    }
  }
  if (!event.unmapped.empty()) {
    ObjectWriter unmapped = root.object("unmapped");
    for (const auto& [key, value] : event.unmapped)
      unmapped.entry(key, value);
  }
}

}  // namespace

void render_json(const Event& event, std::string& out) {
  write_event(event, out);
  out.push_back('\n');
}

std::string to_json(const Event& event) {
  std::string out;
  out.reserve(512);
  write_event(event, out);
  return out;
}

}  // namespace openshell::core
