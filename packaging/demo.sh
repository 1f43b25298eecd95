#!/usr/bin/env bash
# Quick start: installs what is missing, builds a release binary, and shows the product's main
# job. Until the sandbox lands that is policy tooling: check the example policies, then decide
# one connection that is allowed and one that is denied.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${OPENSHELL_BUILD:-build/release}
packaging/install-deps.sh
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release -Dtests=false >/dev/null
meson compile -C "$build" -j 2 openshell >/dev/null
bin="$build/src/cli/openshell"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$bin" policy check examples/policies/*.yaml
step "$bin" policy eval examples/policies/agent-github-readonly.yaml \
  --host api.github.com --port 443 --binary /usr/bin/curl --method GET --path /repos/acme/app/issues
step "$bin" policy eval examples/policies/agent-github-readonly.yaml \
  --host api.github.com --port 443 --binary /usr/bin/curl --method DELETE --path /repos/acme/app
step "$bin" policy eval examples/policies/agent-github-readonly.yaml \
  --host evil.example --port 443 --binary /usr/bin/curl --json
