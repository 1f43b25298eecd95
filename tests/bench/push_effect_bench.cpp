// Push-to-effect latency (issue 4): from the moment a controller calls push_policy until the next
// decision is made under the new generation, for policies of 10 and 1,000 entries, in process
// (LocalProxyControl) and over the control socket (GrpcProxyControl, unix). Prints the median and
// p90 in milliseconds; a figure, not a timed test (target: ≤ 5 ms median for 1,000 policies).
#include <fmt/core.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "openshell/control/client.hpp"
#include "openshell/control/server.hpp"
#include "openshell/policy/engine.hpp"
#include "openshell/proxy/control.hpp"
#include "openshell/proxy/policy_store.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRounds = 50;

// `count` policies, each one host; `marker` changes the last host so every push differs.
std::string make_policy(int count, int marker) {
  std::string text = "version: 1\nnetwork_policies:\n";
  for (int i = 0; i < count; ++i) {
    const int host = i == count - 1 ? 100000 + marker : i;
    text +=
        fmt::format("  p{}:\n    endpoints:\n      - {{host: h{}.example, port: 443}}\n", i, host);
  }
  return text;
}

void measure(const char* label, openshell::proxy::ProxyControl& control,
             openshell::proxy::PolicyStore& store, int count) {
  std::vector<double> samples;
  for (int round = 0; round < kRounds; ++round) {
    const std::string text = make_policy(count, round);
    const auto start = Clock::now();
    auto pushed = control.push_policy({text, openshell::proxy::PolicyFormat::kYaml, ""});
    // The next decision: the store's current snapshot is what a connection would take.
    const auto snapshot = store.current();
    const auto end = Clock::now();
    if (!pushed.ok() || !pushed->accepted || snapshot->generation() != pushed->generation) {
      fmt::print(stderr, "push failed in round {}\n", round);
      std::exit(1);
    }
    samples.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(samples.begin(), samples.end());
  fmt::print("{:<10} {:>5} policies: median {:8.3f} ms  p90 {:8.3f} ms  ({} pushes)\n", label,
             count, samples[samples.size() / 2], samples[samples.size() * 9 / 10], kRounds);
}

}  // namespace

int main() {
  namespace control = openshell::control;
  namespace proxy = openshell::proxy;
  char pattern[] = "/tmp/openshell-push-bench-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  for (const int count : {10, 1000}) {
    proxy::PolicyStore store;
    proxy::LocalProxyControl local(store, nullptr);
    measure("local", local, store, count);
    auto server = control::ControlServer::start(
        {*control::parse_endpoint("unix:" + dir + "/control.sock"), "", {}}, local);
    if (!server.ok()) {
      fmt::print(stderr, "{}\n", server.error().message);
      return 1;
    }
    control::GrpcProxyControl client((*server)->endpoint(), "");
    measure("grpc-unix", client, store, count);
    (*server)->shutdown();
  }
  std::filesystem::remove_all(dir);
  return 0;
}
