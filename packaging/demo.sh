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

# The live part: local origins on 127.0.0.1:8080 (HTTP) and :8443 (HTTPS, the policy's
# endpoints) behind the proxy.
for p in 8080 8443; do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 0.5)" 2>/dev/null; then
    echo "demo: port $p is taken; skipping the live proxy part" >&2
    exit 0
  fi
done
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
echo "hello from the local origin" >"$work/index.html"
python3 -m http.server 8080 --bind 127.0.0.1 -d "$work" >/dev/null 2>&1 &
pids+=($!)
# The HTTPS origin's certificate comes from a throwaway demo CA, which the proxy is told to
# trust for upstreams (--upstream-ca); the client trusts the proxy's own CA (--ca-out).
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=demo origin CA" -keyout origin-ca.key -out origin-ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout origin.key -out origin.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >origin.ext
  openssl x509 -req -in origin.csr -CA origin-ca.pem -CAkey origin-ca.key -CAcreateserial \
    -days 1 -extfile origin.ext -out origin.pem 2>/dev/null
)
python3 - "$work" >/dev/null 2>&1 <<'EOF' &
import functools, http.server, ssl, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 8443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(f"{sys.argv[1]}/origin.pem", f"{sys.argv[1]}/origin.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
pids+=($!)
port=$(free_port)
"$bin" proxy --listen "127.0.0.1:$port" --policy "$policy" --allow-loopback-upstream \
  --upstream-ca "$work/origin-ca.pem" --ca-out "$work/openshell-ca.pem" \
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
# HTTPS: the proxy terminates TLS (the endpoint has rules) and decides each request.
step curl -sS -x "$proxy" --cacert "$work/openshell-ca.pem" https://localhost:8443/index.html
step curl -sS -x "$proxy" --cacert "$work/openshell-ca.pem" -X POST \
  https://localhost:8443/admin/users
echo
step curl -sS -x "$proxy" http://example.com/
echo
printf '\n\033[1m$ cat proxy.log\033[0m\n'
sleep 0.2
cat "$work/proxy.log"
