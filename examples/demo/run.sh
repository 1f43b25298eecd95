#!/usr/bin/env bash
# The live part of the quick start (packaging/demo.sh; tests/integration/test_demo.py runs it in
# a network namespace of its own): a local HTTPS origin on 127.0.0.2:8443 with a throwaway CA,
# then an agent script in `openshell sandbox` under examples/policies/demo.yaml, which ends with
# the sandbox's denial summary. Offline; everything it starts or writes is gone when it exits.
#
#   examples/demo/run.sh OPENSHELL_BINARY
#
# Exits with the sandbox's status. Needs root (the sandbox runs the agent as nobody), openssl,
# python3 and curl.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OPENSHELL_BINARY" >&2; exit 2; }
bin=$(realpath "$1")
cd "$(dirname "$0")/../.."

# NO_PROXY in the sandbox covers localhost and 127.0.0.1, so the origin is elsewhere on loopback.
address=127.0.0.2
port=8443

# Under /var/tmp, not /tmp: the sandbox gets a private /tmp, and the agent's script must be in
# its --workdir. The origin's keys stay in a 0700 subdirectory the agent cannot read.
work=$(mktemp -d /var/tmp/openshell-demo-XXXXXX)
origin_pid=
cleanup() {
  if [ -n "$origin_pid" ]; then
    kill "$origin_pid" 2>/dev/null || true
    wait "$origin_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir -m 700 "$work/pki"

(
  cd "$work/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=openshell demo origin CA" -keyout origin-ca.key -out origin-ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$address" \
    -keyout origin.key -out origin.csr 2>/dev/null
  printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$address" >origin.ext
  openssl x509 -req -in origin.csr -CA origin-ca.pem -CAkey origin-ca.key -CAcreateserial \
    -days 1 -extfile origin.ext -out origin.pem 2>/dev/null
)

python3 examples/demo/origin.py "$address" "$port" "$work/pki/origin.pem" "$work/pki/origin.key" \
  >"$work/pki/origin.log" 2>&1 &
origin_pid=$!
for _ in $(seq 50); do
  grep -q '^ready' "$work/pki/origin.log" && break
  if ! kill -0 "$origin_pid" 2>/dev/null; then
    echo "demo: the origin did not start on $address:$port:" >&2
    cat "$work/pki/origin.log" >&2
    exit 1
  fi
  sleep 0.1
done
grep -q '^ready' "$work/pki/origin.log" || { echo "demo: the origin did not start" >&2; exit 1; }

cp examples/demo/agent.sh "$work/agent.sh"
printf '\n\033[1m$ openshell sandbox --policy examples/policies/demo.yaml --allow-loopback-upstream \\\n'
printf '    --upstream-ca origin-ca.pem --workdir DIR -- sh agent.sh\033[0m\n'
# OPENSHELL_DEMO_LOG_FORMAT=json: openshell's stderr as JSON lines (the test checks both).
status=0
"$bin" sandbox --policy examples/policies/demo.yaml --allow-loopback-upstream \
  --upstream-ca "$work/pki/origin-ca.pem" --workdir "$work" --no-tty --timeout 60 \
  --log-format "${OPENSHELL_DEMO_LOG_FORMAT:-text}" -- sh agent.sh || status=$?
exit "$status"
