// The spawner's side of the channel: the loop that runs in the forked, single-threaded spawner.
#pragma once

#include <sys/types.h>

#include "openshell/runtime/spawner.hpp"

namespace openshell::runtime::spawner {

// Serves spawn requests on `channel` until the runtime closes it (or dies: PR_SET_PDEATHSIG),
// then SIGKILLs every sandbox still running, reaps them and exits. `parent` is the runtime's pid.
[[noreturn]] void run(int channel, const SpawnerConfig& config, pid_t parent) noexcept;

}  // namespace openshell::runtime::spawner
