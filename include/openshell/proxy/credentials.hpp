// The proxy's credential store (spec §4.1–4.2): key → secret, optionally bound to endpoints.
// Each set_credentials builds a new immutable CredentialSet and swaps it in atomically; requests
// keep the snapshot they started with. Secret bytes are wiped when the last snapshot holding them
// goes away, so a replaced credential does not linger in freed memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::proxy {

// Where a credential may be injected: host pattern (spec §1.8 wildcards; empty = any host),
// port (0 = any) and path selector (spec §1.9 (c): "/v1/**"; empty = any path).
struct CredentialBinding {
  std::string host;
  uint16_t port = 0;
  std::string path;
};

// What a controller hands the proxy: secret plus bindings (none: usable on any allowed request).
struct CredentialSpec {
  std::string value;
  std::vector<CredentialBinding> bindings;
};
using CredentialMap = std::map<std::string, CredentialSpec>;

// The prefix of every placeholder the workload sees (spec §4.2).
inline constexpr std::string_view kPlaceholderPrefix = "openshell:resolve:env:";
// Provider-shaped alias `<prefix>-OPENSHELL-RESOLVE-ENV-KEY` (prefix of [A-Za-z0-9_.~-]) for
// clients that check a key's shape; resolves like the canonical form.
inline constexpr std::string_view kAliasMarker = "-OPENSHELL-RESOLVE-ENV-";

// Key grammar [A-Za-z_][A-Za-z0-9_]*.
bool valid_credential_key(std::string_view key);
bool is_credential_key_char(char c);

// A heap buffer that is zeroed before it is freed; never copied.
class SecretBytes {
 public:
  explicit SecretBytes(std::string_view value);
  ~SecretBytes();
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  std::string_view view() const { return {data_.get(), size_}; }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
};

// Zeroes `text`'s bytes in a way the compiler may not elide (explicit_bzero).
void wipe(std::string& text);

// Why a placeholder could not be used on a request.
enum class CredentialAccess { kGranted, kUnknown, kEndpointMismatch };

// One immutable snapshot.
class CredentialSet {
 public:
  // Checks keys, sizes and values (no CR, LF or NUL) and compiles bindings.
  static Result<std::shared_ptr<const CredentialSet>> build(const CredentialMap& credentials);
  ~CredentialSet();
  CredentialSet(const CredentialSet&) = delete;
  CredentialSet& operator=(const CredentialSet&) = delete;

  bool empty() const;
  size_t size() const;
  std::vector<std::string> keys() const;
  // The secret for `key` on a request to host (lowercase) : port, path (redacted, no query).
  CredentialAccess resolve(std::string_view key, std::string_view host, uint16_t port,
                           std::string_view path, std::string_view& secret) const;
  // A tunnel to host:port may carry a credential: some key is unbound, or bound to it.
  bool may_apply(std::string_view host, uint16_t port) const;
  // Some key is bound to host:port ("credentialed endpoint", spec §4.6).
  bool binds_endpoint(std::string_view host, uint16_t port) const;

 private:
  struct Entry;
  CredentialSet();
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;
};

// Holds the current snapshot; readers never block writers for long.
class CredentialStore {
 public:
  CredentialStore();
  ~CredentialStore();
  CredentialStore(const CredentialStore&) = delete;
  CredentialStore& operator=(const CredentialStore&) = delete;

  std::shared_ptr<const CredentialSet> current() const;
  void replace(std::shared_ptr<const CredentialSet> set);

 private:
  std::atomic<std::shared_ptr<const CredentialSet>> set_;
};

// Bounds on what a controller may store: the proxy holds these in memory for its lifetime.
inline constexpr size_t kMaxCredentials = 1024;
inline constexpr size_t kMaxSecretBytes = 64 * 1024;
inline constexpr size_t kMaxBindingsPerCredential = 64;

}  // namespace openshell::proxy
