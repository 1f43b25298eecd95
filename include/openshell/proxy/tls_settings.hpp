// Settings both TLS sides share (client-facing leaves and origin-facing connections).
#pragma once

#include <mbedtls/ecp.h>
#include <mbedtls/ssl.h>

namespace openshell::proxy::tls {

// TLS 1.2 (all mbedTLS 2.28 has), no renegotiation, and key exchange groups fastest first:
// mbedTLS's default list starts at secp521r1, which an origin following the client's
// preference would pick, at several times the cost of X25519 per handshake.
inline void apply_common_settings(mbedtls_ssl_config& config) {
  static const mbedtls_ecp_group_id kCurves[] = {MBEDTLS_ECP_DP_CURVE25519,
                                                 MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
                                                 MBEDTLS_ECP_DP_NONE};
  mbedtls_ssl_conf_curves(&config, kCurves);
  mbedtls_ssl_conf_min_version(&config, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_renegotiation(&config, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
}

}  // namespace openshell::proxy::tls
