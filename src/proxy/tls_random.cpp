// Seeding and drawing from the process-wide DRBG.
#include "openshell/proxy/tls_random.hpp"

#include <string>

namespace openshell::proxy::tls {

TlsRandom::TlsRandom() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
}

TlsRandom::~TlsRandom() {
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Result<void> TlsRandom::init(TlsRandom& random) {
  static constexpr unsigned char kPersonalisation[] = "openshell-proxy";
  const int rc = mbedtls_ctr_drbg_seed(&random.drbg_, mbedtls_entropy_func, &random.entropy_,
                                       kPersonalisation, sizeof(kPersonalisation) - 1);
  if (rc != 0) {
    return make_error(Errc::kInternal, "TLS random generator could not be seeded (mbedTLS error " +
                                           std::to_string(rc) + ")");
  }
  return {};
}

int TlsRandom::generate(void* self, unsigned char* output, size_t length) {
  return mbedtls_ctr_drbg_random(&static_cast<TlsRandom*>(self)->drbg_, output, length);
}

}  // namespace openshell::proxy::tls
