// Each subcommand registers itself on the root CLI11 app and leaves behind the action to run once
// parsing has succeeded (one file per subcommand, no logic a test would want to call).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace openshell::cli {

// Set by the subcommand that was selected; returns the process exit code.
using Action = std::function<int()>;

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

void add_policy_command(CLI::App& root, Action& action);
#ifdef OPENSHELL_WITH_PROXY
void add_proxy_command(CLI::App& root, Action& action);
void add_ctl_command(CLI::App& root, Action& action);
#endif
#ifdef OPENSHELL_WITH_RUNTIME
void add_run_command(CLI::App& root, Action& action);
#endif
#ifdef OPENSHELL_WITH_SANDBOX
void add_sandbox_command(CLI::App& root, Action& action);
#endif

// Prints a one-line usage error with a hint and returns kExitUsage.
int usage_error(const CLI::App& app, const std::string& message);

}  // namespace openshell::cli
