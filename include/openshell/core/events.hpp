// Ready-made events for the decisions the proxy and runtime report (proxy-spec §7.3 table), so
// every producer words and classifies them the same way. Each returns an Event to extend further.
#pragma once

#include <cstdint>
#include <string_view>

#include "openshell/core/event.hpp"

namespace openshell::core::events {

// NET:OPEN allowed under `policy`: "CONNECT allowed H:P" ("CONNECT_L7 allowed H:P" with an L7
// route); rule (policy, opa); Informational.
Event network_open_allowed(std::string_view host, uint16_t port, std::string_view policy,
                           bool l7 = false);
// NET:OPEN denied by the policy engine: "CONNECT denied H:P", reason in status_detail; rule
// ("-", opa); Medium.
Event network_open_denied(std::string_view host, uint16_t port, std::string_view reason);
// NET:OPEN blocked by the SSRF guard. `kind` is the §2.8 kind ("internal address", "allowed_ips
// check failed", …): "CONNECT blocked: internal address H:P" or "CONNECT blocked: {kind} for H:P";
// rule ("-", ssrf); Medium.
Event network_open_blocked(std::string_view host, uint16_t port, std::string_view kind,
                           std::string_view reason);
// NET:CLOSE of a tunnel or relayed connection, with its byte counts and lifetime.
Event network_close(std::string_view host, uint16_t port, uint64_t bytes_in, uint64_t bytes_out,
                    int64_t duration_ms);
// NET:REFUSE of a direct connection that bypassed the proxy (§7.1): rule (bypass-detect,
// nftables), Medium. `binary` is "-" when unknown.
Event network_bypass(std::string_view dst_ip, uint16_t port, std::string_view protocol,
                     std::string_view binary, int pid);

// FINDING:CREATE of a direct connection or datagram from a sandboxed process to a destination
// outside its namespace, seen by the seccomp bypass monitor: "BYPASS_DETECT {ip}:{port}
// proto={p} binary={exe} pid={pid} call={syscall} action=reject reason=..."; uid bypass-detect,
// title "Proxy Bypass Detected", confidence High, an alert, with spec §7.1's remediation hint;
// rule (bypass-detect, seccomp); Medium. `binary` is "-" when unknown.
Event bypass_finding(std::string_view dst_ip, uint16_t port, std::string_view protocol,
                     std::string_view binary, int pid, std::string_view call);

enum class L7Decision : uint8_t { kAllow, kAudit, kDeny };
std::string_view l7_decision_name(L7Decision decision);  // "allow", "audit", "deny"

// HTTP:OTHER for one inspected request: "L7_REQUEST {allow|audit|deny} {METHOD} {H}:{P}{path}
// reason={reason}" with the path's query dropped; rule (policy, l7). Audit is Allowed with
// disposition Detected; deny is Denied/Blocked, Medium.
Event http_l7_decision(L7Decision decision, std::string_view method, std::string_view host,
                       uint16_t port, std::string_view path, std::string_view policy,
                       std::string_view reason);

// FINDING:CREATE; `uid` identifies the detection (e.g. "bypass-detect"). High findings are alerts.
Event finding(std::string_view uid, std::string_view title, Severity severity,
              Confidence confidence);

// PROC:LAUNCH / PROC:TERMINATE of a sandboxed process.
Event process_launch(ProcessInfo process);
Event process_exit(ProcessInfo process, int exit_code);

// CONFIG:LOG (Device Config State Change) for policy pushes: a generation went live, or a push
// was refused (the old policy stays).
Event policy_loaded(uint64_t generation, std::string_view digest);
Event policy_rejected(std::string_view reason);

// APP lifecycle steps of openshell itself ("proxy listening on …", "shutting down").
Event app_lifecycle(AppActivity activity, std::string_view message);

// A plain diagnostic line (what Logger::info & co. emit).
Event diagnostic(Level level, std::string_view message);

}  // namespace openshell::core::events
