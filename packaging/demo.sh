#!/usr/bin/env bash
# Quick start: installs what is missing, builds a release binary, and shows the product's main
# job offline: policy tooling, then the egress proxy enforcing a policy in front of a local
# origin it serves itself (nothing leaves the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${OPENSHELL_BUILD:-build/release}
packaging/install-deps.sh
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
meson compile -C "$build" -j 2 openshell >/dev/null
bin="$build/src/cli/openshell"
policy=examples/policies/local-demo.yaml

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@" || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "$bin" policy check examples/policies/*.yaml
step "$bin" policy eval "$policy" --host 127.0.0.1 --port 8080 --binary /usr/bin/curl \
  --method GET --path /index.html --json
step "$bin" policy eval "$policy" --host 127.0.0.1 --port 8080 --binary /usr/bin/curl \
  --method POST --path /admin/users --json

# The live part: a local origin on 127.0.0.1:8080 (the policy's endpoint) behind the proxy.
if python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8080), 0.5)' 2>/dev/null; then
  echo "demo: port 8080 is taken; skipping the live proxy part" >&2
  exit 0
fi
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
echo "hello from the local origin" >"$work/index.html"
python3 -m http.server 8080 --bind 127.0.0.1 -d "$work" >/dev/null 2>&1 &
pids+=($!)
port=$(free_port)
"$bin" proxy --listen "127.0.0.1:$port" --policy "$policy" --allow-loopback-upstream \
  --log-format text --log-file "$work/proxy.log" &
pids+=($!)
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
proxy="http://127.0.0.1:$port"
step curl -sS -x "$proxy" http://127.0.0.1:8080/index.html
step curl -sS -x "$proxy" -X POST http://127.0.0.1:8080/admin/users
echo
step curl -sS -x "$proxy" http://example.com/
echo
printf '\n\033[1m$ cat proxy.log\033[0m\n'
sleep 0.2
cat "$work/proxy.log"
