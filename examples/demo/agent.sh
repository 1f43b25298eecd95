# The demo's "agent", run inside `openshell sandbox`: one request the policy allows and one it
# refuses. HTTPS_PROXY points at the sandbox's proxy and curl trusts the proxy's CA, both set by
# the sandbox; nothing here knows about either.
origin=https://127.0.0.2:8443

echo "agent: GET $origin/hello"
curl -sS --max-time 10 -w '  -> HTTP %{http_code}\n' "$origin/hello"

echo "agent: POST $origin/admin/users"
curl -sS --max-time 10 -X POST -w '\n  -> HTTP %{http_code}\n' "$origin/admin/users"
