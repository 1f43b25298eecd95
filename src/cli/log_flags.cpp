// Logging flags: text on a terminal, JSON lines otherwise, unless told.
#include "log_flags.hpp"

namespace openshell::cli {

void LogFlags::add_to(CLI::App& app) {
  app.add_option("--log-format", format, "text, json, or auto (text on a terminal, else JSON)")
      ->check(CLI::IsMember({"auto", "text", "json"}))
      ->default_str("auto");
  app.add_option("--log-file", file, "Append logs to this file instead of stderr");
  app.add_option("--log-level", level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->default_str("info");
}

Result<std::shared_ptr<core::Logger>> LogFlags::install() const {
  core::LogOptions options;
  options.format = core::parse_log_format(format).value_or(core::LogFormat::kAuto);
  options.file = file;
  options.level = core::parse_level(level).value_or(core::Level::kInfo);
  auto logger = core::make_logger(options);
  if (logger.ok()) core::set_default_logger(*logger);
  return logger;
}

}  // namespace openshell::cli
