// Everything TLS interception needs for the life of the proxy (spec §3): the CA and its leaf
// cache (the client-facing side), and the upstream client configuration with its trusted roots
// and resumable sessions (the origin-facing side).
#pragma once

#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include <asio/thread_pool.hpp>
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/proxy/leaf_cache.hpp"
#include "openshell/proxy/tls_ca.hpp"
#include "openshell/proxy/tls_random.hpp"

namespace openshell::proxy::tls {

struct InterceptionOptions {
  // Both or neither: a CA that must persist (e.g. a Kubernetes Secret); otherwise a fresh one.
  std::string ca_cert_path;
  std::string ca_key_path;
  // Roots trusted for upstream certificates besides the system bundle (private PKI, tests).
  std::vector<std::string> upstream_ca_paths;
  size_t leaf_cache_size = kDefaultLeafCacheSize;
  // Parse the system bundle on first need (the first upstream handshake, or a prefetch) instead
  // of in create(): it costs about 4 ms of mbedTLS base64 work that a short-lived sandbox never
  // needs. create() still checks that some roots exist and parses the --upstream-ca files, so a
  // bad flag stays a start error; a bundle that then yields nothing fails every upstream handshake.
  bool defer_system_roots = false;
};

class Interception {
 public:
  // Errors name the file or the step that failed; the proxy cannot intercept without them.
  static Result<std::unique_ptr<Interception>> create(const InterceptionOptions& options);
  ~Interception();
  Interception(const Interception&) = delete;
  Interception& operator=(const Interception&) = delete;

  const CertificateAuthority& ca() const { return *ca_; }
  LeafCache& leaves() { return *leaves_; }
  // Both load the deferred system roots first if need be (at most once, thread-safe; blocking
  // while another thread loads them). Without roots the configuration verifies nothing, so a
  // handshake with it fails closed; upstream_roots() says why.
  const mbedtls_ssl_config& upstream_config();
  size_t trusted_roots();
  // The roots, loaded if need be: an error naming the bundle when none could be loaded.
  Result<void> upstream_roots();
  // Starts loading the deferred roots on the minting thread, so the first upstream handshake
  // does not wait for them on an I/O thread. Cheap after the first call.
  void prefetch_roots();

  // Upstream session resumption (a full handshake costs a P-256 verify, about 1 ms here).
  void remember_session(const std::string& origin, const mbedtls_ssl_context& ssl);
  void resume_session(const std::string& origin, mbedtls_ssl_context& ssl);

 private:
  Interception();
  Result<void> load_roots(const InterceptionOptions& options);
  void load_system_roots();

  // The first readable system bundle ("" when none), parsed by load_system_roots().
  std::string system_bundle_;
  std::once_flag system_roots_once_;
  std::atomic<bool> prefetched_{false};
  std::optional<Error> roots_error_;  // written once under system_roots_once_

  TlsRandom random_;
  mbedtls_ssl_ticket_context tickets_;
  std::unique_ptr<CertificateAuthority> ca_;
  asio::thread_pool minting_{1};
  std::unique_ptr<LeafCache> leaves_;
  mbedtls_x509_crt roots_;
  size_t root_count_ = 0;
  mbedtls_ssl_config upstream_;

  struct SessionDeleter {
    void operator()(mbedtls_ssl_session* session) const;
  };
  using Session = std::unique_ptr<mbedtls_ssl_session, SessionDeleter>;
  std::mutex sessions_mutex_;
  std::unordered_map<std::string, Session> sessions_;
};

}  // namespace openshell::proxy::tls
