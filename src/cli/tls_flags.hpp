// TLS interception flags (--ca-cert/--ca-key, --ca-out, --ca-bundle-out, --upstream-ca,
// --tls-intercept, --leaf-cache-size), shared by `proxy` and `sandbox`.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"
#include "openshell/proxy/tls_interception.hpp"

namespace openshell::cli {

struct TlsFlags {
  proxy::tls::InterceptionOptions options;
  std::string ca_out;
  std::string ca_bundle_out;
  std::string intercept = "auto";  // auto | all

  void add_to(CLI::App& app);
  bool intercept_all() const { return intercept == "all"; }
  // Sets interception up and writes the requested trust files. Errors name the flag or file.
  Result<std::unique_ptr<proxy::tls::Interception>> create(core::Logger& log) const;
};

}  // namespace openshell::cli
