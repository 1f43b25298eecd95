// Settings both TLS sides share (client-facing leaves and origin-facing connections).
#pragma once

#include <mbedtls/ecp.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>

namespace openshell::proxy::tls {

// TLS 1.2 (all mbedTLS 2.28 has), no renegotiation, and key exchange groups cheapest first.
// mbedTLS picks by its own order, and its default list starts at secp521r1 (measured: 2.2 ms
// of ECDHE per handshake); its P-256 with NIST_OPTIM is the cheapest here (0.95 ms), ahead of
// X25519 (1.1 ms).
inline void apply_common_settings(mbedtls_ssl_config& config) {
  static const mbedtls_ecp_group_id kCurves[] = {MBEDTLS_ECP_DP_SECP256R1,
                                                 MBEDTLS_ECP_DP_CURVE25519,
                                                 MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
  mbedtls_ssl_conf_curves(&config, kCurves);
  mbedtls_ssl_conf_min_version(&config, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_renegotiation(&config, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
}

// The client-facing side serves our own ECDSA leaves, so only ECDHE-ECDSA AEAD suites are
// offered, AES-GCM first (AES-NI makes it cheaper than ChaCha20, which mbedTLS prefers).
inline void apply_server_settings(mbedtls_ssl_config& config) {
  apply_common_settings(config);
  static const int kSuites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                                MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                                MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0};
  mbedtls_ssl_conf_ciphersuites(&config, kSuites);
}

}  // namespace openshell::proxy::tls
