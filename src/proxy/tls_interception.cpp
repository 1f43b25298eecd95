// Setting up interception once: CA (generated or loaded), session tickets for clients, trusted
// roots and the upstream client configuration; and the upstream session store.
#include "openshell/proxy/tls_interception.hpp"

#include <mbedtls/cipher.h>

#include <array>
#include <asio/post.hpp>
#include <fstream>

#include "openshell/proxy/tls_settings.hpp"

namespace openshell::proxy::tls {

namespace {

// The system bundles, in the order spec §3.2 names them.
constexpr std::array kSystemBundles = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
};

// Upstream connections offer HTTP/1.1 only: that is what the inspection relay speaks.
const char* const kAlpn[] = {"http/1.1", nullptr};

// Clients resumed through tickets skip the leaf signature; a day bounds a stolen key's use.
constexpr uint32_t kTicketLifetimeSeconds = 24 * 3600;

// Upstream sessions kept for resumption; when full, the store starts over (like the leaf
// cache in the reference), which costs one full handshake per origin.
constexpr size_t kMaxSessions = 1024;

size_t count_certificates(const mbedtls_x509_crt& chain) {
  size_t count = 0;
  for (const mbedtls_x509_crt* crt = &chain; crt != nullptr && crt->raw.len > 0; crt = crt->next) {
    ++count;
  }
  return count;
}

bool readable(const char* path) {
  return std::ifstream(path).good();
}

Error tls_setup_error(std::string_view step, int rc) {
  return make_error(Errc::kInternal, "TLS interception: " + std::string(step) +
                                         " failed (mbedTLS error " + std::to_string(rc) + ")");
}

}  // namespace

void Interception::SessionDeleter::operator()(mbedtls_ssl_session* session) const {
  mbedtls_ssl_session_free(session);
  delete session;
}

Interception::Interception() {
  mbedtls_ssl_ticket_init(&tickets_);
  mbedtls_x509_crt_init(&roots_);
  mbedtls_ssl_config_init(&upstream_);
}

Interception::~Interception() {
  // Mints in flight use the CA: let them finish before anything is freed.
  minting_.join();
  leaves_.reset();
  ca_.reset();
  mbedtls_ssl_config_free(&upstream_);
  mbedtls_x509_crt_free(&roots_);
  mbedtls_ssl_ticket_free(&tickets_);
}

Result<std::unique_ptr<Interception>> Interception::create(const InterceptionOptions& options) {
  std::unique_ptr<Interception> self(new Interception());
  if (auto seeded = TlsRandom::init(self->random_); !seeded) return seeded.error();

  if (const int rc =
          mbedtls_ssl_ticket_setup(&self->tickets_, &TlsRandom::generate, self->random_.context(),
                                   MBEDTLS_CIPHER_AES_256_GCM, kTicketLifetimeSeconds);
      rc != 0) {
    return tls_setup_error("session ticket key setup", rc);
  }

  if (options.ca_cert_path.empty() != options.ca_key_path.empty()) {
    return make_error(Errc::kInvalidArgument, "--ca-cert and --ca-key must be given together");
  }
  auto ca = options.ca_cert_path.empty()
                ? CertificateAuthority::generate(self->random_, &self->tickets_)
                : CertificateAuthority::load(options.ca_cert_path, options.ca_key_path,
                                             self->random_, &self->tickets_);
  if (!ca.ok()) return ca.error();
  self->ca_ = std::move(ca.value());
  self->leaves_ = std::make_unique<LeafCache>(*self->ca_, self->minting_, options.leaf_cache_size);

  if (auto roots = self->load_roots(options); !roots) return roots.error();

  mbedtls_ssl_config& config = self->upstream_;
  if (const int rc = mbedtls_ssl_config_defaults(
          &config, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
      rc != 0) {
    return tls_setup_error("upstream TLS configuration", rc);
  }
  // Full verification, always: there is no insecure mode to fall back to.
  mbedtls_ssl_conf_authmode(&config, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&config, &self->roots_, nullptr);
  mbedtls_ssl_conf_rng(&config, &TlsRandom::generate, self->random_.context());
  apply_common_settings(config);
  mbedtls_ssl_conf_session_tickets(&config, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
  if (const int rc = mbedtls_ssl_conf_alpn_protocols(&config, const_cast<const char**>(kAlpn));
      rc != 0) {
    return tls_setup_error("upstream ALPN", rc);
  }
  return self;
}

Result<void> Interception::load_roots(const InterceptionOptions& options) {
  if (options.defer_system_roots) {
    for (const char* bundle : kSystemBundles) {
      if (readable(bundle)) {
        system_bundle_ = bundle;
        break;
      }
    }
  } else {
    for (const char* bundle : kSystemBundles) {
      if (!readable(bundle)) continue;
      // A positive return counts certificates that failed to parse; the rest are loaded.
      if (mbedtls_x509_crt_parse_file(&roots_, bundle) >= 0) break;
    }
    std::call_once(system_roots_once_, [] {});  // nothing left to load on first need
  }
  for (const std::string& path : options.upstream_ca_paths) {
    const size_t before = count_certificates(roots_);
    const int rc = mbedtls_x509_crt_parse_file(&roots_, path.c_str());
    if (rc < 0 || count_certificates(roots_) == before) {
      return make_error(Errc::kInvalidArgument,
                        "--upstream-ca " + path + ": no certificate could be read from it");
    }
  }
  root_count_ = count_certificates(roots_);
  if (root_count_ == 0 && system_bundle_.empty()) {
    return make_error(Errc::kNotFound,
                      "TLS interception: no trusted roots (no system CA bundle and no "
                      "--upstream-ca): upstream certificates could never be verified");
  }
  return {};
}

void Interception::load_system_roots() {
  std::call_once(system_roots_once_, [this] {
    if (system_bundle_.empty()) return;  // --upstream-ca roots only, already loaded
    // The bundle was readable at start; whatever it yields now is what upstreams are checked
    // against. Failing here fails every upstream handshake (closed), never skips verification.
    const int rc = mbedtls_x509_crt_parse_file(&roots_, system_bundle_.c_str());
    root_count_ = count_certificates(roots_);
    if (root_count_ == 0) {
      roots_error_ =
          make_error(Errc::kNotFound,
                     "TLS interception: no trusted roots could be loaded from " + system_bundle_ +
                         (rc < 0 ? " (mbedTLS error " + std::to_string(rc) + ")" : "") +
                         ": upstream certificates cannot be verified");
    }
  });
}

const mbedtls_ssl_config& Interception::upstream_config() {
  load_system_roots();
  return upstream_;
}

size_t Interception::trusted_roots() {
  load_system_roots();
  return root_count_;
}

Result<void> Interception::upstream_roots() {
  load_system_roots();
  if (roots_error_) return *roots_error_;
  return {};
}

void Interception::prefetch_roots() {
  if (prefetched_.exchange(true)) return;
  // The destructor joins minting_ before freeing the roots, so `this` outlives the task.
  asio::post(minting_, [this] { load_system_roots(); });
}

void Interception::remember_session(const std::string& origin, const mbedtls_ssl_context& ssl) {
  Session session(new mbedtls_ssl_session);
  mbedtls_ssl_session_init(session.get());
  if (mbedtls_ssl_get_session(&ssl, session.get()) != 0) return;
  std::lock_guard lock(sessions_mutex_);
  if (sessions_.size() >= kMaxSessions && !sessions_.contains(origin)) sessions_.clear();
  sessions_[origin] = std::move(session);
}

void Interception::resume_session(const std::string& origin, mbedtls_ssl_context& ssl) {
  std::lock_guard lock(sessions_mutex_);
  const auto found = sessions_.find(origin);
  // set_session copies the session (ticket included), so the stored one stays usable.
  if (found != sessions_.end()) (void)mbedtls_ssl_set_session(&ssl, found->second.get());
}

}  // namespace openshell::proxy::tls
