// Endpoint host patterns (spec §1.7, §1.8): the validator's accepted wildcard shapes and the
// label-wise DNS glob the engine matches hosts with.
#include "openshell/policy/host_pattern.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/policy/glob.hpp"

namespace openshell::policy {
namespace {

constexpr size_t kNpos = std::string_view::npos;

// The label of `text` that starts at `start`.
std::string_view label_at(std::string_view text, size_t start) {
  const size_t dot = text.find('.', start);
  return text.substr(start, (dot == kNpos ? text.size() : dot) - start);
}

}  // namespace

std::optional<std::string> validate_host_pattern(std::string_view pattern) {
  if (pattern.find('*') == kNpos) return std::nullopt;
  const std::string host(pattern);
  // The reference names the pattern as written, so `**` reads "host wildcard '**' ...".
  if (pattern == "*" || pattern == "**") {
    return "host wildcard '" + host +
           "' matches all hosts; use specific patterns like '*.example.com'";
  }
  const std::string recursive_error =
      "recursive host wildcard '**' is only allowed as the entire first DNS label, got '" + host +
      "'";
  size_t labels = 0;
  for (size_t start = 0; start <= pattern.size(); ++labels) {
    const std::string_view label = label_at(pattern, start);
    const bool first = labels == 0;
    if (label.find("**") != kNpos && !(first && label == "**")) return recursive_error;
    if (!first && label.find('*') != kNpos && label != "*") {
      return "middle DNS label wildcard must be the entire label '*', got '" + host + "'";
    }
    start += label.size() + 1;
  }
  // Reject TLD and single-label wildcards: the engine accepts them but they never work in practice.
  if (labels <= 2) {
    return "TLD wildcard '" + host +
           "' is not allowed; use subdomain wildcards like '*.example.com' instead";
  }
  return std::nullopt;
}

HostPattern HostPattern::compile(std::string_view pattern) {
  HostPattern out;
  out.pattern_ = std::string(pattern);
  const std::string lower = ascii_lowercase(pattern);
  std::vector<std::string_view> texts;
  for (size_t start = 0; start <= lower.size();) {
    const std::string_view label = label_at(lower, start);
    texts.push_back(label);
    out.labels_.push_back(Label{label == "**", Glob::compile(label, GlobDialect::kQuery)});
    start += label.size() + 1;
  }
  const auto literal = [](std::string_view label) {
    return label.find_first_of("*?[{\\") == kNpos;
  };
  while (out.literal_labels_ < texts.size() &&
         literal(texts[texts.size() - 1 - out.literal_labels_])) {
    ++out.literal_labels_;
  }
  if (out.literal_labels_ > 0) {
    const size_t first = texts.size() - out.literal_labels_;
    // Offset of the first literal label in `lower`; keep the dot before it unless it is label 0.
    const size_t offset = static_cast<size_t>(texts[first].data() - lower.data());
    out.literal_tail_ = lower.substr(first == 0 ? 0 : offset - 1);
  }
  return out;
}

bool HostPattern::matches(std::string_view lowercase_host) const {
  // regorus refuses a NUL (its internal glob placeholder); the engine denies, so never match.
  if (lowercase_host.find('\0') != kNpos) return false;
  const size_t wild_labels = labels_.size() - literal_labels_;
  if (literal_labels_ == 0) return match_labels(wild_labels, lowercase_host);
  // The trailing literal labels each consume exactly one host label, so they must be the host's
  // tail; only the head is left to the wildcard labels.
  if (!lowercase_host.ends_with(literal_tail_)) return false;
  if (wild_labels == 0) return lowercase_host.size() == literal_tail_.size();
  return match_labels(wild_labels,
                      lowercase_host.substr(0, lowercase_host.size() - literal_tail_.size()));
}

// Labels play the part of characters in a classic wildcard match: `**` is "one label, then any
// number", so remembering only the latest `**` is enough, and the work is at most
// pattern labels × host labels however many `**` the pattern holds.
bool HostPattern::match_labels(size_t label_count, std::string_view host) const {
  const size_t exhausted = host.size() + 1;  // offset meaning "no host label left"
  const auto label_end = [&](size_t start) {
    while (start < host.size() && host[start] != '.')
      ++start;
    return start;
  };
  size_t index = 0;
  size_t at = 0;
  size_t resume_index = kNpos;  // pattern label after the latest `**`
  size_t resume_at = 0;         // where that `**` stopped consuming host labels
  while (at != exhausted) {
    const size_t end = label_end(at);
    const size_t next = end == host.size() ? exhausted : end + 1;
    if (index < label_count) {
      const Label& label = labels_[index];
      if (label.recursive) {
        at = next;
        resume_index = ++index;
        resume_at = at;
        continue;
      }
      if (label.glob.matches(host.substr(at, end - at))) {
        at = next;
        ++index;
        continue;
      }
    }
    // Mismatch, or pattern used up with host labels left: let the latest `**` take one more.
    if (resume_index == kNpos || resume_at == exhausted) return false;
    const size_t taken = label_end(resume_at);
    resume_at = taken == host.size() ? exhausted : taken + 1;
    at = resume_at;
    index = resume_index;
  }
  // Host used up: any pattern label left would need a host label of its own.
  return index == label_count;
}

std::string ascii_lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace openshell::policy
