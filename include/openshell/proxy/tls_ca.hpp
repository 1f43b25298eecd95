// The interception CA (spec §3.1) and the per-host leaf certificates it mints (§3.3), plus the
// trust files handed to the child (§3.2). mbedTLS 2.28 underneath.
#pragma once

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "openshell/core/result.hpp"
#include "openshell/proxy/tls_random.hpp"

namespace openshell::proxy::tls {

// A minted leaf, ready to terminate TLS for one host. Immutable once built; shared between the
// cache and every connection using it. Non-movable: server_config points at chain and key.
struct LeafCertificate {
  LeafCertificate();
  ~LeafCertificate();
  LeafCertificate(const LeafCertificate&) = delete;
  LeafCertificate& operator=(const LeafCertificate&) = delete;

  mbedtls_x509_crt chain;  // the leaf, then the CA: what mbedtls_ssl_conf_own_cert serves
  mbedtls_pk_context key;  // the leaf's private key
  // Server side, TLS 1.2 only (2.28 has no 1.3), ALPN {"http/1.1"}, no client auth, no
  // renegotiation, session tickets when the CA was given a ticket context.
  mbedtls_ssl_config server_config;
};

class CertificateAuthority {
 public:
  // `random` and `tickets` (optional: null disables session tickets) must outlive the CA and
  // every leaf it mints; the ticket context must already be set up (mbedtls_ssl_ticket_setup).
  static Result<std::unique_ptr<CertificateAuthority>> generate(
      TlsRandom& random, mbedtls_ssl_ticket_context* tickets = nullptr);
  // The certificate may be PEM or DER (its first certificate is used); the key PEM or DER,
  // unencrypted, EC or RSA. Errors name the file and what is wrong with it.
  static Result<std::unique_ptr<CertificateAuthority>> load(
      const std::string& cert_path, const std::string& key_path, TlsRandom& random,
      mbedtls_ssl_ticket_context* tickets = nullptr);

  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  const std::string& cert_pem() const { return cert_pem_; }
  const mbedtls_x509_crt* certificate() const { return &cert_; }

  // A fresh P-256 leaf for `host` (a DNS name, or an IPv4/IPv6 literal, brackets optional),
  // valid from a day ago for a year (never past the CA). Thread-safe, and CPU-heavy (a key
  // generation and a signature): call it off the I/O threads.
  Result<std::shared_ptr<const LeafCertificate>> mint(std::string_view host) const;

 private:
  CertificateAuthority(TlsRandom& random, mbedtls_ssl_ticket_context* tickets);
  Result<void> adopt(const unsigned char* der, size_t der_len, std::string_view origin);

  TlsRandom& random_;
  mbedtls_ssl_ticket_context* tickets_;
  mbedtls_x509_crt cert_;
  // mbedTLS's writer takes the issuer key non-const; signing with it is serialised anyway.
  mutable mbedtls_pk_context key_;
  mutable std::mutex sign_mutex_;
  std::string cert_pem_;
  std::vector<unsigned char> key_id_;  // the CA's subjectKeyIdentifier, for leaves' AKI
};

// The system CA bundle (first readable of the usual paths), a newline if it lacks a final one,
// then `ca_pem` (spec §3.2). Just `ca_pem` when no system bundle is readable.
std::string combined_ca_bundle(std::string_view ca_pem);

// Writes `pem` to `path` atomically (temporary file in the same directory, then rename), mode
// 0644 whatever the umask: the sandboxed child must be able to read it whatever its uid.
Result<void> write_pem_file(const std::string& path, std::string_view pem);

// The same file as write_pem_file(path, combined_ca_bundle(ca_pem)), the system bundle's bytes
// copied in the kernel rather than read into memory (`openshell sandbox` writes one per start).
Result<void> write_ca_bundle_file(const std::string& path, std::string_view ca_pem);

}  // namespace openshell::proxy::tls
