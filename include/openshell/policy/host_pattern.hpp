// Endpoint host patterns (spec §1.8): exact hosts compared lowercase, and label-wise DNS wildcards.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openshell::policy {

// Validation message for a wildcard host (spec §1.7 wording), or nullopt when acceptable.
// Exact hosts (no '*') are always acceptable here.
std::optional<std::string> validate_host_pattern(std::string_view pattern);

// A compiled wildcard host pattern. Matching expects the host already ASCII-lowercased.
class HostPattern {
 public:
  static HostPattern compile(std::string_view pattern);
  bool matches(std::string_view lowercase_host) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Label {
    bool recursive = false;  // `**`: one or more labels
    std::string glob;        // single-label glob: '*', '?', '[...]'
  };
  bool match_from(size_t label_index, std::string_view host) const;
  std::string pattern_;
  std::vector<Label> labels_;
};

// ASCII lowercase, used for hosts everywhere.
std::string ascii_lowercase(std::string_view text);

}  // namespace openshell::policy
