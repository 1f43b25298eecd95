// Usage errors: one line naming the problem and where to look, exit 2, whatever CLI11's own
// exit codes would have been.
#include <fmt/core.h>

#include <string>

#include "commands.hpp"

namespace openshell::cli {

namespace {

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr; app = app->get_parent()) {
    path = path.empty() ? app->get_name() : app->get_name() + " " + path;
  }
  return path;
}

}  // namespace

int usage_error(const CLI::App& app, const std::string& message) {
  std::string text = message;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  const std::string path = command_path(&app);
  fmt::print(stderr, "{}: {} (see '{} --help')\n", path, text, path);
  return kExitUsage;
}

}  // namespace openshell::cli
