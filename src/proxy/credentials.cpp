// Credential snapshots: validated once when a controller sets them, wiped when replaced.
#include "openshell/proxy/credentials.hpp"

#include <string.h>  // explicit_bzero

#include <algorithm>
#include <cctype>
#include <optional>

#include "openshell/policy/glob.hpp"
#include "openshell/policy/host_pattern.hpp"

namespace openshell::proxy {

bool is_credential_key_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) != 0 || c == '_';
}

bool valid_credential_key(std::string_view key) {
  if (key.empty() || key.size() > 256) return false;
  const auto head = static_cast<unsigned char>(key.front());
  if (!(std::isalpha(head) != 0 || head == '_')) return false;
  return std::all_of(key.begin(), key.end(), is_credential_key_char);
}

SecretBytes::SecretBytes(std::string_view value)
    : data_(std::make_unique<char[]>(value.size() + 1)), size_(value.size()) {
  std::copy(value.begin(), value.end(), data_.get());
}

SecretBytes::~SecretBytes() {
  if (data_) explicit_bzero(data_.get(), size_);
}

void wipe(std::string& text) {
  if (!text.empty()) explicit_bzero(text.data(), text.size());
}

namespace {

struct CompiledBinding {
  std::string host;  // lowercase; empty: any
  std::optional<policy::HostPattern> pattern;
  uint16_t port = 0;
  std::optional<policy::EndpointPathSelector> path;

  bool matches_endpoint(std::string_view h, uint16_t p) const {
    if (port != 0 && port != p) return false;
    if (host.empty()) return true;
    if (pattern) return pattern->matches(h);
    return host == h;
  }
  bool matches(std::string_view h, uint16_t p, std::string_view request_path) const {
    return matches_endpoint(h, p) && (!path || path->matches(request_path));
  }
};

}  // namespace

struct CredentialSet::Entry {
  explicit Entry(std::string_view value) : secret(value) {}
  SecretBytes secret;
  std::vector<CompiledBinding> bindings;
};

CredentialSet::CredentialSet() = default;
CredentialSet::~CredentialSet() = default;

Result<std::shared_ptr<const CredentialSet>> CredentialSet::build(
    const CredentialMap& credentials) {
  if (credentials.size() > kMaxCredentials) {
    return make_error(Errc::kLimit, "too many credentials: " + std::to_string(credentials.size()) +
                                        " (at most " + std::to_string(kMaxCredentials) + ")");
  }
  std::shared_ptr<CredentialSet> set(new CredentialSet());
  for (const auto& [key, spec] : credentials) {
    // Messages name the key, never the value.
    if (!valid_credential_key(key)) {
      return make_error(Errc::kInvalidArgument,
                        "credential key '" + key + "' is not [A-Za-z_][A-Za-z0-9_]*");
    }
    if (spec.value.size() > kMaxSecretBytes) {
      return make_error(Errc::kInvalidArgument, "credential " + key + ": value longer than " +
                                                    std::to_string(kMaxSecretBytes) + " bytes");
    }
    // Such a value could never be injected into a header safely (spec §4.3).
    if (spec.value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return make_error(Errc::kInvalidArgument,
                        "credential " + key + ": value contains CR, LF or NUL");
    }
    if (spec.bindings.size() > kMaxBindingsPerCredential) {
      return make_error(Errc::kLimit, "credential " + key + ": more than " +
                                          std::to_string(kMaxBindingsPerCredential) + " bindings");
    }
    auto entry = std::make_unique<Entry>(spec.value);
    for (size_t i = 0; i < spec.bindings.size(); ++i) {
      const CredentialBinding& binding = spec.bindings[i];
      const std::string where = "credential " + key + ": bindings[" + std::to_string(i) + "]";
      CompiledBinding compiled;
      compiled.host = policy::ascii_lowercase(binding.host);
      if (compiled.host == "*" || compiled.host == "**") compiled.host.clear();
      if (compiled.host.find('*') != std::string::npos) {
        if (auto problem = policy::validate_host_pattern(compiled.host)) {
          return make_error(Errc::kInvalidArgument, where + ": " + *problem);
        }
        compiled.pattern = policy::HostPattern::compile(compiled.host);
      }
      compiled.port = binding.port;
      if (!binding.path.empty()) {
        if (binding.path.front() != '/' && binding.path != "**") {
          return make_error(
              Errc::kInvalidArgument,
              where + ": path must start with '/' or be '**', got '" + binding.path + "'");
        }
        compiled.path = policy::EndpointPathSelector::compile(binding.path);
      }
      entry->bindings.push_back(std::move(compiled));
    }
    set->entries_.emplace(key, std::move(entry));
  }
  return std::shared_ptr<const CredentialSet>(std::move(set));
}

bool CredentialSet::empty() const {
  return entries_.empty();
}

size_t CredentialSet::size() const {
  return entries_.size();
}

std::vector<std::string> CredentialSet::keys() const {
  std::vector<std::string> out;
  for (const auto& [key, entry] : entries_)
    out.push_back(key);
  return out;
}

CredentialAccess CredentialSet::resolve(std::string_view key, std::string_view host, uint16_t port,
                                        std::string_view path, std::string_view& secret) const {
  const auto found = entries_.find(key);
  if (found == entries_.end()) return CredentialAccess::kUnknown;
  const Entry& entry = *found->second;
  if (!entry.bindings.empty() &&
      std::none_of(entry.bindings.begin(), entry.bindings.end(),
                   [&](const CompiledBinding& b) { return b.matches(host, port, path); })) {
    return CredentialAccess::kEndpointMismatch;
  }
  secret = entry.secret.view();
  return CredentialAccess::kGranted;
}

bool CredentialSet::may_apply(std::string_view host, uint16_t port) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& item) {
    const Entry& entry = *item.second;
    return entry.bindings.empty() ||
           std::any_of(entry.bindings.begin(), entry.bindings.end(),
                       [&](const CompiledBinding& b) { return b.matches_endpoint(host, port); });
  });
}

bool CredentialSet::binds_endpoint(std::string_view host, uint16_t port) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& item) {
    const Entry& entry = *item.second;
    return std::any_of(entry.bindings.begin(), entry.bindings.end(), [&](const CompiledBinding& b) {
      return !b.host.empty() && b.matches_endpoint(host, port);
    });
  });
}

CredentialStore::CredentialStore() : set_(*CredentialSet::build({})) {}
CredentialStore::~CredentialStore() = default;

std::shared_ptr<const CredentialSet> CredentialStore::current() const {
  return set_.load();
}

void CredentialStore::replace(std::shared_ptr<const CredentialSet> set) {
  set_.store(std::move(set));
}

}  // namespace openshell::proxy
