#!/usr/bin/env bash
# Quick start: installs what is missing, builds a release binary, checks the demo policy, then
# runs an agent script in `openshell sandbox` against a local HTTPS origin it starts itself
# (examples/demo/run.sh): one request allowed, one refused, then the sandbox's denial summary.
# Offline (nothing leaves the machine); the origin and its temp dir are gone when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${OPENSHELL_BUILD:-build/release}
packaging/install-deps.sh
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
meson compile -C "$build" -j 2 openshell >/dev/null
bin="$build/src/cli/openshell"

printf '\n\033[1m$ openshell policy check examples/policies/demo.yaml\033[0m\n'
"$bin" policy check examples/policies/demo.yaml
exec examples/demo/run.sh "$bin"
