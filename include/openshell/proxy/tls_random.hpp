// The one random generator behind every TLS key, signature and handshake of the process:
// mbedTLS's CTR_DRBG seeded from its entropy pool. mbedTLS is built with MBEDTLS_THREADING_C,
// so the DRBG locks itself and one instance serves all I/O threads and the minting worker.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include <cstddef>

#include "openshell/core/result.hpp"

namespace openshell::proxy::tls {

class TlsRandom {
 public:
  // Fails only when the entropy source does (no /dev/urandom, getrandom unavailable).
  static Result<void> init(TlsRandom& random);

  TlsRandom();
  ~TlsRandom();
  TlsRandom(const TlsRandom&) = delete;
  TlsRandom& operator=(const TlsRandom&) = delete;

  // The f_rng / p_rng pair mbedTLS functions take.
  static int generate(void* self, unsigned char* output, size_t length);
  void* context() { return this; }

 private:
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
};

}  // namespace openshell::proxy::tls
