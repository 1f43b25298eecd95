// Entry point: builds the command tree, parses flags, runs the selected subcommand.
#include <fmt/core.h>

#include <csignal>
#include <cstdio>

#include "commands.hpp"
#include "openshell_config.hpp"

namespace {

// The deepest subcommand that was selected, for usage messages that name it.
const CLI::App* selected_app(const CLI::App& root) {
  const CLI::App* app = &root;
  for (;;) {
    const auto chosen = app->get_subcommands();
    if (chosen.empty()) return app;
    app = chosen.front();
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A peer closing mid-write must be an error return, never a process kill (BUILD-NOTES §9.6).
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App root{"openshell: run untrusted workloads behind a policy-enforcing egress proxy",
                "openshell"};
  root.set_version_flag("--version", std::string("openshell ") + OPENSHELL_VERSION);
  root.require_subcommand(1);
  root.fallthrough(false);

  openshell::cli::Action action;
  openshell::cli::add_policy_command(root, action);
#ifdef OPENSHELL_WITH_PROXY
  openshell::cli::add_proxy_command(root, action);
  openshell::cli::add_ctl_command(root, action);
#endif
#ifdef OPENSHELL_WITH_RUNTIME
  openshell::cli::add_run_command(root, action);
#endif
#ifdef OPENSHELL_WITH_SANDBOX
  openshell::cli::add_sandbox_command(root, action);
#endif

  try {
    root.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    fmt::print("{}", selected_app(root)->help());
    return openshell::cli::kExitOk;
  } catch (const CLI::CallForAllHelp&) {
    fmt::print("{}", root.help("", CLI::AppFormatMode::All));
    return openshell::cli::kExitOk;
  } catch (const CLI::CallForVersion&) {
    fmt::print("openshell {}\n", OPENSHELL_VERSION);
    return openshell::cli::kExitOk;
  } catch (const CLI::ParseError& error) {
    // CLI11 reports a missing subcommand before an unknown word; name the word instead.
    if (selected_app(root) == &root && argc > 1 && argv[1][0] != '-') {
      bool known = false;
      for (const CLI::App* sub : root.get_subcommands({}))
        known = known || sub->check_name(argv[1]);
      if (!known) {
        return openshell::cli::usage_error(root, std::string("unknown command '") + argv[1] + "'");
      }
    }
    return openshell::cli::usage_error(*selected_app(root), error.what());
  }
  if (!action) return openshell::cli::usage_error(*selected_app(root), "a subcommand is required");
  return action();
}
