// --log-format / --log-file / --log-level, shared by every long-running subcommand.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "openshell/core/log.hpp"
#include "openshell/core/result.hpp"

namespace openshell::cli {

struct LogFlags {
  std::string format = "auto";
  std::string file;
  std::string level = "info";

  void add_to(CLI::App& app);
  // The logger the flags describe; also installed as the process default.
  Result<std::shared_ptr<core::Logger>> install() const;
};

}  // namespace openshell::cli
