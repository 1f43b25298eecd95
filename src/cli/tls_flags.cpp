// Interception setup from flags: CA generated or loaded, trust files written for clients.
#include "tls_flags.hpp"

namespace openshell::cli {

void TlsFlags::add_to(CLI::App& app) {
  app.add_option("--ca-cert", options.ca_cert_path,
                 "Interception CA certificate (PEM) to use instead of a fresh one per start")
      ->check(CLI::ExistingFile);
  app.add_option("--ca-key", options.ca_key_path, "Private key (PEM, unencrypted) of --ca-cert")
      ->check(CLI::ExistingFile);
  app.add_option("--ca-out", ca_out, "Write the interception CA certificate (PEM) to this file");
  app.add_option("--ca-bundle-out", ca_bundle_out,
                 "Write the system CA bundle plus the interception CA to this file");
  app.add_option("--upstream-ca", options.upstream_ca_paths,
                 "Extra roots (PEM) trusted for upstream certificates, beside the system bundle "
                 "(repeatable)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-intercept", intercept,
                 "auto: terminate TLS only where L7 rules or credentials need it; all: every "
                 "tunnel not marked `tls: skip` (clients must trust the CA)")
      ->check(CLI::IsMember({"auto", "all"}))
      ->default_val("auto");
  app.add_option("--leaf-cache-size", options.leaf_cache_size,
                 "Leaf certificates kept (least recently used evicted)")
      ->check(CLI::Range(1, 1000000))
      ->default_val(proxy::tls::kDefaultLeafCacheSize);
}

Result<std::unique_ptr<proxy::tls::Interception>> TlsFlags::create(core::Logger& log) const {
  auto interception = proxy::tls::Interception::create(options);
  if (!interception.ok()) return interception.error();
  const std::string& pem = (*interception)->ca().cert_pem();
  if (!ca_out.empty()) {
    if (auto written = proxy::tls::write_pem_file(ca_out, pem); !written) {
      return written.error();
    }
  }
  if (!ca_bundle_out.empty()) {
    if (auto written =
            proxy::tls::write_pem_file(ca_bundle_out, proxy::tls::combined_ca_bundle(pem));
        !written) {
      return written.error();
    }
  }
  log.info("TLS interception ready: {} CA, {} trusted upstream roots, TLS 1.2 (mbedTLS 2.28){}",
           options.ca_cert_path.empty() ? "fresh" : "loaded", (*interception)->trusted_roots(),
           ca_out.empty() ? "" : ", CA written to " + ca_out);
  return interception;
}

}  // namespace openshell::cli
