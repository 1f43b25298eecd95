// The standard events of proxy-spec §7.3: one place decides their class, wording and severity.
#include "openshell/core/events.hpp"

#include <fmt/core.h>

#include <string>
#include <utility>

namespace openshell::core::events {
namespace {

// "host:port", with IPv6 literals bracketed so the port stays readable.
std::string host_port(std::string_view host, uint16_t port) {
  if (host.find(':') != std::string_view::npos && host.front() != '[') {
    return fmt::format("[{}]:{}", host, port);
  }
  return fmt::format("{}:{}", host, port);
}

}  // namespace

Event network_open_allowed(std::string_view host, uint16_t port, std::string_view policy, bool l7) {
  Event event = Event::network(NetworkActivity::kOpen)
                    .allowed()
                    .with_dst(host, port)
                    .with_rule(policy.empty() ? std::string_view("-") : policy, "opa");
  event.message =
      fmt::format("{} allowed {}", l7 ? "CONNECT_L7" : "CONNECT", host_port(host, port));
  return event;
}

Event network_open_denied(std::string_view host, uint16_t port, std::string_view reason) {
  Event event = Event::network(NetworkActivity::kOpen)
                    .denied()
                    .with_dst(host, port)
                    .with_rule("-", "opa")
                    .with_reason(reason);
  event.message = fmt::format("CONNECT denied {}", host_port(host, port));
  return event;
}

Event network_open_blocked(std::string_view host, uint16_t port, std::string_view kind,
                           std::string_view reason) {
  Event event = Event::network(NetworkActivity::kOpen)
                    .denied()
                    .with_dst(host, port)
                    .with_rule("-", "ssrf")
                    .with_reason(reason);
  event.message = kind == "internal address"
                      ? fmt::format("CONNECT blocked: internal address {}", host_port(host, port))
                      : fmt::format("CONNECT blocked: {} for {}", kind, host_port(host, port));
  return event;
}

Event network_close(std::string_view host, uint16_t port, uint64_t bytes_in, uint64_t bytes_out,
                    int64_t duration_ms) {
  Event event = Event::network(NetworkActivity::kClose)
                    .with_status(Status::kSuccess)
                    .with_dst(host, port)
                    .with_traffic(bytes_in, bytes_out)
                    .with_duration_ms(duration_ms);
  event.message = fmt::format("CLOSE {} in={} out={} duration_ms={}", host_port(host, port),
                              bytes_in, bytes_out, duration_ms);
  return event;
}

Event network_bypass(std::string_view dst_ip, uint16_t port, std::string_view protocol,
                     std::string_view binary, int pid) {
  constexpr std::string_view kReason = "direct connection bypassed HTTP CONNECT proxy";
  const std::string_view bin = binary.empty() ? std::string_view("-") : binary;
  Event event = Event::network(NetworkActivity::kRefuse)
                    .with_action(Action::kDenied, Disposition::kBlocked)
                    .with_status(Status::kFailure)
                    .with_severity(Severity::kMedium)
                    .with_dst(dst_ip, port)
                    .with_protocol(protocol)
                    .with_actor(bin, pid)
                    .with_rule("bypass-detect", "nftables")
                    .with_reason(kReason);
  event.message = fmt::format("BYPASS_DETECT {} proto={} binary={} action=reject reason={}",
                              host_port(dst_ip, port), protocol, bin, kReason);
  return event;
}

Event bypass_finding(std::string_view dst_ip, uint16_t port, std::string_view protocol,
                     std::string_view binary, int pid, std::string_view call) {
  constexpr std::string_view kReason = "direct connection bypassed HTTP CONNECT proxy";
  const std::string_view bin = binary.empty() ? std::string_view("-") : binary;
  Finding info;
  info.uid = "bypass-detect";
  info.title = "Proxy Bypass Detected";
  info.confidence = Confidence::kHigh;
  info.is_alert = true;
  if (protocol == "udp") {
    info.remediation = port == 53 ? "DNS queries should route through the sandbox proxy; check "
                                    "resolver configuration"
                                  : "UDP traffic must route through the sandbox proxy";
  } else {
    info.remediation =
        "ensure process honors HTTP_PROXY/HTTPS_PROXY; for Node.js set NODE_USE_ENV_PROXY=1";
  }
  info.evidence = {{"dst_addr", std::string(dst_ip)},   {"dst_port", std::to_string(port)},
                   {"proto", std::string(protocol)},    {"binary", std::string(bin)},
                   {"binary_pid", std::to_string(pid)}, {"syscall", std::string(call)}};
  Event event = Event::detection(FindingActivity::kCreate)
                    .with_severity(Severity::kMedium)
                    .with_action(Action::kDenied, Disposition::kBlocked)
                    .with_dst(dst_ip, port)
                    .with_protocol(protocol)
                    .with_actor(bin, pid)
                    .with_rule("bypass-detect", "seccomp")
                    .with_reason(kReason)
                    .with_finding(std::move(info))
                    .with_cid(CorrelationId::next());
  event.message =
      fmt::format("BYPASS_DETECT {} proto={} binary={} pid={} call={} action=reject reason={}",
                  host_port(dst_ip, port), protocol, bin, pid, call, kReason);
  return event;
}

std::string_view l7_decision_name(L7Decision decision) {
  switch (decision) {
    case L7Decision::kAllow:
      return "allow";
    case L7Decision::kAudit:
      return "audit";
    case L7Decision::kDeny:
      return "deny";
  }
  return "deny";
}

Event http_l7_decision(L7Decision decision, std::string_view method, std::string_view host,
                       uint16_t port, std::string_view path, std::string_view policy,
                       std::string_view reason) {
  Event event = Event::http_activity(HttpActivity::kOther)
                    .with_http(method, "http", host, port, path)
                    .with_dst(host, port)
                    .with_rule(policy.empty() ? std::string_view("-") : policy, "l7")
                    .with_reason(reason);
  switch (decision) {
    case L7Decision::kAllow:
      event.allowed();
      break;
    case L7Decision::kAudit:
      event.allowed().with_action(Action::kAllowed, Disposition::kDetected);
      break;
    case L7Decision::kDeny:
      event.denied();
      break;
  }
  event.message = fmt::format("L7_REQUEST {} {} {}{} reason={}", l7_decision_name(decision), method,
                              host_port(host, port), redact_query(path), reason);
  return event;
}

Event finding(std::string_view uid, std::string_view title, Severity severity,
              Confidence confidence) {
  Finding info;
  info.uid.assign(uid);
  info.title.assign(title);
  info.confidence = confidence;
  info.is_alert = severity >= Severity::kHigh;
  Event event = Event::detection(FindingActivity::kCreate)
                    .with_severity(severity)
                    .with_finding(std::move(info))
                    .with_message(title);
  event.disposition = Disposition::kDetected;
  return event;
}

Event process_launch(ProcessInfo process) {
  Event event = Event::process_activity(ProcessActivity::kLaunch).with_status(Status::kSuccess);
  event.message = fmt::format("launched {} pid={}", process.name, process.pid);
  event.process = std::move(process);
  return event;
}

Event process_exit(ProcessInfo process, int exit_code) {
  Event event = Event::process_activity(ProcessActivity::kTerminate);
  event.message = fmt::format("{} pid={} exited with {}", process.name, process.pid, exit_code);
  process.exit_code = exit_code;
  event.process = std::move(process);
  return event;
}

Event policy_loaded(uint64_t generation, std::string_view digest) {
  Event event = Event::config_change(ConfigActivity::kLog)
                    .with_status(Status::kSuccess)
                    .with_field("policy_generation", std::to_string(generation));
  if (!digest.empty()) event.with_field("policy_digest", digest);
  event.message = fmt::format("policy generation {} loaded", generation);
  return event;
}

Event policy_rejected(std::string_view reason) {
  return Event::config_change(ConfigActivity::kLog)
      .with_status(Status::kFailure)
      .with_severity(Severity::kMedium)
      .with_message("policy rejected; the previous policy stays active")
      .with_reason(reason);
}

Event app_lifecycle(AppActivity activity, std::string_view message) {
  return Event::lifecycle(activity).with_status(Status::kSuccess).with_message(message);
}

Event diagnostic(Level level, std::string_view message) {
  Event event = Event::lifecycle(AppActivity::kOther).with_message(message);
  switch (level) {
    case Level::kDebug:
    case Level::kInfo:
      event.severity = Severity::kInformational;
      break;
    case Level::kWarn:
      event.severity = Severity::kLow;
      break;
    case Level::kError:
      event.severity = Severity::kHigh;
      break;
  }
  event.level = level;
  event.diagnostic = true;
  return event;
}

}  // namespace openshell::core::events
