// `openshell policy check|eval`: offline policy tooling for authors and CI.
#include <fmt/core.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "commands.hpp"
#include "openshell/policy/engine.hpp"
#include "openshell/policy/loader.hpp"
#include "openshell/policy/path_canon.hpp"

namespace openshell::cli {

namespace {

namespace policy = openshell::policy;

// "FILE:LINE:COL: error: path: message", the form editors and CI annotate.
void print_diagnostic(const std::string& file, const policy::Diagnostic& d) {
  std::string where = file;
  if (d.location.line > 0) where += fmt::format(":{}:{}", d.location.line, d.location.column);
  const char* severity = d.severity == policy::Severity::kError ? "error" : "warning";
  if (d.path.empty()) {
    fmt::print(stderr, "{}: {}: {}\n", where, severity, d.message);
  } else {
    fmt::print(stderr, "{}: {}: {}: {}\n", where, severity, d.path, d.message);
  }
}

int run_check(const std::vector<std::string>& files) {
  bool all_valid = true;
  for (const std::string& file : files) {
    const policy::LoadResult result = policy::load_policy_file(file);
    size_t warnings = 0;
    for (const auto& d : result.diagnostics) {
      print_diagnostic(file, d);
      if (d.severity == policy::Severity::kWarning) ++warnings;
    }
    if (result.ok()) {
      const size_t count = result.document->network_policies.size();
      fmt::print("{}: valid ({} network {}, {} {})\n", file, count,
                 count == 1 ? "policy" : "policies", warnings,
                 warnings == 1 ? "warning" : "warnings");
    } else {
      fmt::print("{}: invalid\n", file);
      all_valid = false;
    }
  }
  return all_valid ? kExitOk : kExitFailure;
}

struct EvalOptions {
  std::string file;
  std::string host;
  int port = 0;
  std::string binary;
  std::vector<std::string> ancestors;
  std::string method;
  std::string path;
  std::vector<std::string> query;
  bool json = false;
};

void print_decision(const EvalOptions& options, const policy::Decision& decision) {
  if (options.json) {
    nlohmann::ordered_json out;
    out["action"] = policy::action_name(decision.action);
    out["matched_policy"] = decision.matched_policy.empty()
                                ? nlohmann::ordered_json(nullptr)
                                : nlohmann::ordered_json(std::string(decision.matched_policy));
    out["reason"] = decision.reason;
    out["layer"] = policy::layer_name(decision.layer);
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("{} ({})", policy::action_name(decision.action), policy::layer_name(decision.layer));
  if (!decision.matched_policy.empty()) fmt::print(" policy={}", decision.matched_policy);
  fmt::print("\n");
  if (!decision.reason.empty()) fmt::print("reason: {}\n", decision.reason);
}

int run_eval(const EvalOptions& options) {
  const policy::LoadResult loaded = policy::load_policy_file(options.file);
  for (const auto& d : loaded.diagnostics)
    print_diagnostic(options.file, d);
  if (!loaded.ok()) return kExitFailure;
  const auto engine = policy::compile_policy(*loaded.document, 1);

  policy::ProcessIdentity identity;
  identity.exe = options.binary;
  identity.ancestors = options.ancestors;
  policy::ConnectInput connection;
  connection.host = options.host;
  connection.port = static_cast<uint16_t>(options.port);
  connection.identity = options.binary.empty() ? nullptr : &identity;

  if (options.method.empty()) {
    print_decision(options, engine->decide_connect(connection));
    return kExitOk;
  }

  // The path is canonicalised exactly as the proxy would before deciding.
  const auto canonical = policy::canonicalize_target(
      options.path, policy::canon_options(engine->decide_connect(connection)));
  if (const auto* error = std::get_if<policy::CanonError>(&canonical)) {
    policy::Decision decision;
    decision.layer = policy::Layer::kL7;
    decision.reason =
        fmt::format("request-target must be canonical ({})", policy::canon_error_name(*error));
    print_decision(options, decision);
    return kExitOk;
  }
  const auto& target = std::get<policy::CanonicalTarget>(canonical);
  policy::QueryParams query;
  if (target.has_query && !policy::parse_query(target.raw_query, query)) {
    policy::Decision decision;
    decision.layer = policy::Layer::kL7;
    decision.reason = "request query is not valid percent-encoded UTF-8";
    print_decision(options, decision);
    return kExitOk;
  }
  for (const std::string& pair : options.query) {
    const size_t eq = pair.find('=');
    query.emplace_back(pair.substr(0, eq), eq == std::string::npos ? "" : pair.substr(eq + 1));
  }
  policy::RequestInput request;
  request.method = options.method;
  request.path = target.path;
  request.query = &query;
  print_decision(options, engine->decide_request(connection, request));
  return kExitOk;
}

}  // namespace

void add_policy_command(CLI::App& root, Action& action) {
  CLI::App* policy_app = root.add_subcommand("policy", "Check policy files and evaluate decisions");
  policy_app->require_subcommand(1);

  auto files = std::make_shared<std::vector<std::string>>();
  CLI::App* check = policy_app->add_subcommand(
      "check", "Load and validate policy files; print every error and warning with its location");
  check->add_option("FILE", *files, "Policy files (YAML or JSON)")->required();
  check->callback([&action, files] { action = [files] { return run_check(*files); }; });

  auto options = std::make_shared<EvalOptions>();
  CLI::App* eval = policy_app->add_subcommand(
      "eval", "Decide one connection (L4) or, with --method, one HTTP request (L7) under a policy");
  eval->add_option("FILE", options->file, "Policy file")->required();
  eval->add_option("--host", options->host, "Destination host")->required();
  eval->add_option("--port", options->port, "Destination port")
      ->required()
      ->check(CLI::Range(1, 65535));
  eval->add_option("--binary", options->binary,
                   "Executable opening the connection (omit: binaries are not evaluated)");
  eval->add_option("--ancestor", options->ancestors,
                   "Ancestor executable, nearest first (repeatable)");
  auto* method = eval->add_option("--method", options->method, "HTTP method (L7 decision)");
  auto* path = eval->add_option("--path", options->path, "Request path, may carry ?query");
  method->needs(path);
  path->needs(method);
  eval->add_option("--query", options->query, "Decoded query parameter k=v (repeatable)")
      ->needs(method);
  eval->add_flag("--json", options->json,
                 "Print one JSON object: action, matched_policy, reason, layer");
  eval->callback([&action, options] { action = [options] { return run_eval(*options); }; });
}

}  // namespace openshell::cli
