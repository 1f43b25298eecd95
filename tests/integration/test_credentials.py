"""Credential injection end to end (proxy-spec §4): `openshell proxy --control` given secrets by
`ctl set-credentials` (YAML file with bindings), curl inside one fresh network namespace sending
placeholders through intercepted TLS to recording HTTPS origins (https_origin.py, test_pki.py).

Checks: the origin receives the real secret in headers (Bearer, whole value, Basic), query values
and path segments while the client only ever sent placeholders; a key bound to another host is
refused with 403 credential_endpoint_mismatch before anything reaches the origin; an unknown key
is 500 credential_unavailable; bodies are rewritten only where the endpoint opts in
(`request_body_credential_rewrite`), with Content-Length recomputed, and elsewhere a streamed
body carrying a placeholder is refused (500); a `tls: skip` tunnel to a
credentialed endpoint is refused (403 uninspected_credentials); and the secrets appear in no
proxy log line and no `ctl` output.
"""
import atexit
import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import types

import test_pki
from https_origin import OriginProcess
from proxy_fixture import Lab, Response, curl, policy_yaml
from tap import BIN, main, test

LOOPBACK = ["--allow-loopback-upstream"]
NAMES = {"api.test": "127.0.0.2", "other.test": "127.0.0.3", "skip.test": "127.0.0.4"}
SECRET = "sk-test-5b1c9e0f7d3a"
OPEN_SECRET = "open-9f8e7d6c5b4a"
PH = "openshell:resolve:env:"

_pki = None


def pki():
    global _pki
    if _pki is None:
        directory = tempfile.mkdtemp(prefix="openshell-cred-pki-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        maker = test_pki.Pki(directory)
        root = maker.ca("root", "OpenShell Credentials Test Root")
        _pki = types.SimpleNamespace(root=root, origin=maker.leaf("origin", list(NAMES), root))
    return _pki


class CredLab(Lab):
    def __enter__(self):
        super().__enter__()
        with open(self.hosts_path, "a") as hosts:
            hosts.writelines(f"{ip} {name}\n" for name, ip in NAMES.items())
        return self

    def http_origin(self, host):
        origin = OriginProcess(self.dir, f"{host}-{len(self.origins)}", NAMES[host])
        self.origins.append(origin)
        return origin

    def https_origin(self, host):
        origin = OriginProcess(self.dir, f"{host}-{len(self.origins)}", NAMES[host],
                               pki().origin.cert, pki().origin.key)
        self.origins.append(origin)
        return origin


def ctl(endpoint, *args, env=None):
    return subprocess.run([BIN, "ctl", "--endpoint", endpoint, *args], capture_output=True,
                          text=True, timeout=30, env=env)


def start(lab, policies):
    ca_out = os.path.join(lab.dir, "proxy-ca.pem")
    control = "unix:" + os.path.join(lab.dir, "ctl", "control.sock")
    proxy = lab.proxy(policy_yaml(policies), [*LOOPBACK, "--ca-out", ca_out, "--upstream-ca",
                                              pki().root.cert, "--control", control])
    event = proxy.wait_for(lambda e: "control" in e.get("unmapped", {}), what="control event")
    proxy.ca = ca_out
    proxy.endpoint = event["unmapped"]["control"]
    return proxy


def via(proxy, url, *args):
    """curl through the proxy trusting its CA; returns (Response or None, CompletedProcess)."""
    head = os.path.join(proxy.lab.dir, "curl.head")
    body = os.path.join(proxy.lab.dir, "curl.body")
    for path in (head, body):
        if os.path.exists(path):
            os.unlink(path)
    result = curl("-x", f"http://127.0.0.1:{proxy.port}", "--cacert", proxy.ca, "-D", head,
                  "-o", body, *args, url)
    if not os.path.exists(head):
        return None, result
    with open(head, "rb") as handle:
        heads = [h for h in handle.read().split(b"\r\n\r\n") if h.startswith(b"HTTP/")
                 and h[9:10] != b"1" and b"connection established" not in h[:40].lower()]
    with open(body, "rb") if os.path.exists(body) else open(os.devnull, "rb") as handle:
        payload = handle.read()
    return (Response(heads[-1] + b"\r\n\r\n" + payload) if heads else None), result


def write_credentials(lab, api_port):
    return lab.write("creds.yaml", f"""credentials:
  - key: API_KEY
    value: "{SECRET}"
    bindings:
      - {{host: api.test, port: {api_port}, path: "/v1/**"}}
  - key: OPEN_KEY
    env: OPEN_KEY_SOURCE
""")


def assert_no_secret(*texts):
    for text in texts:
        assert SECRET not in text and OPEN_SECRET not in text, text[-2000:]
        for encoded in (base64.b64encode(f"user:{SECRET}".encode()).decode(),):
            assert encoded not in text


@test
def placeholders_become_secrets_only_upstream():
    with CredLab() as lab:
        api = lab.https_origin("api.test")
        other = lab.https_origin("other.test")
        proxy = start(lab, {
            "api": [{"host": "api.test", "port": api.port, "protocol": "rest", "access": "full",
                     "enforcement": "enforce", "request_body_credential_rewrite": True}],
            "other": [{"host": "other.test", "port": other.port, "protocol": "rest",
                       "access": "full", "enforcement": "enforce"}]})
        env = dict(os.environ, OPEN_KEY_SOURCE=OPEN_SECRET)
        pushed = ctl(proxy.endpoint, "set-credentials", "--file", write_credentials(lab, api.port),
                     env=env)
        assert pushed.returncode == 0, pushed
        assert f"API_KEY={PH}API_KEY" in pushed.stdout, pushed

        # Headers (Bearer, whole value, Basic), query value, path segment, opted-in JSON body.
        body = json.dumps({"key": PH + "API_KEY", "n": 1}).encode()
        response, result = via(
            proxy, f"https://api.test:{api.port}/v1/bot{PH}API_KEY/send?a=1&key={PH}API_KEY",
            "-H", f"Authorization: Bearer {PH}API_KEY", "-H", f"X-Open: {PH}OPEN_KEY",
            "-H", "Content-Type: application/json", "--data-binary", body.decode())
        assert response is not None and response.status == 200, (response, result)
        seen = api.requests()[-1]
        assert seen["headers"]["authorization"] == f"Bearer {SECRET}", seen
        assert seen["headers"]["x-open"] == OPEN_SECRET, seen
        assert seen["path"] == f"/v1/bot{SECRET}/send", seen
        assert seen["query"] == f"a=1&key={SECRET}", seen
        expected = json.dumps({"key": SECRET, "n": 1}).encode()
        echoed = response.json()
        assert echoed["body_sha256"] == hashlib.sha256(expected).hexdigest(), echoed
        assert int(seen["headers"]["content-length"]) == len(expected), seen

        # Basic auth: the placeholder inside base64.
        response, result = via(proxy, f"https://api.test:{api.port}/v1/basic",
                               "-u", f"user:{PH}API_KEY")
        assert response is not None and response.status == 200, (response, result)
        basic = api.requests()[-1]["headers"]["authorization"]
        assert base64.b64decode(basic.split()[1]).decode() == f"user:{SECRET}", basic

        # Bound to api.test /v1/**: elsewhere on api.test, and on other.test, refused.
        count = len(api.requests())
        response, _ = via(proxy, f"https://api.test:{api.port}/v2/x",
                          "-H", f"Authorization: Bearer {PH}API_KEY")
        assert response.status == 403, response
        assert response.json()["error"] == "credential_endpoint_mismatch", response
        assert len(api.requests()) == count
        response, _ = via(proxy, f"https://other.test:{other.port}/v1/x",
                          "-H", f"Authorization: Bearer {PH}API_KEY")
        assert response.status == 403 and response.json()["error"] == \
            "credential_endpoint_mismatch", response
        assert other.requests() == []

        # Unknown key: 500, nothing upstream.
        response, _ = via(proxy, f"https://other.test:{other.port}/x", "-H", f"X-K: {PH}NOPE")
        assert response.status == 500 and response.json()["error"] == "credential_unavailable", \
            response
        assert other.requests() == []

        # No body rewrite where the endpoint did not opt in: an ordinary body streams unchanged
        # (headers are still rewritten) ...
        plain = json.dumps({"key": "no placeholder here", "pad": "x" * 5000}).encode()
        response, result = via(proxy, f"https://other.test:{other.port}/echo",
                               "-H", f"X-Open: {PH}OPEN_KEY", "-H",
                               "Content-Type: application/json", "--data-binary", plain.decode())
        assert response is not None and response.status == 200, (response, result)
        assert response.json()["body_sha256"] == hashlib.sha256(plain).hexdigest(), response
        assert other.requests()[-1]["headers"]["x-open"] == OPEN_SECRET
        # ... but a placeholder in it (plain, percent-encoded, deep in a chunked body) is refused
        # with 500 before the marker is forwarded (spec §4.5).
        for extra, data in (([], json.dumps({"key": PH + "OPEN_KEY"})),
                            ([], "a=1&k=openshell%3Aresolve%3Aenv%3AOPEN_KEY"),
                            (["-H", "Transfer-Encoding: chunked"],
                             "y" * 70000 + PH + "OPEN_KEY" + "z" * 100)):
            response, result = via(proxy, f"https://other.test:{other.port}/echo", *extra,
                                   "-H", "Content-Type: text/plain", "--data-binary", data)
            assert response is not None and response.status == 500, (response, result)
            assert response.json()["error"] == "credential_unavailable", response

        status = ctl(proxy.endpoint, "status")
        status_json = ctl(proxy.endpoint, "status", "--json")
        policy = ctl(proxy.endpoint, "get-policy")
        assert status.returncode == 0 and "API_KEY" in status.stdout, status
        assert_no_secret(status.stdout, status.stderr, status_json.stdout, policy.stdout,
                         policy.stderr, pushed.stdout, pushed.stderr)
        proxy.stop()
        log = proxy.log_text()
        assert "credential_endpoint_mismatch" in log and "[CREDENTIAL]" in log, log[-3000:]
        assert_no_secret(log)


@test
def forward_proxy_requests_get_the_same_injection():
    with CredLab() as lab:
        api = lab.http_origin("api.test")
        other = lab.http_origin("other.test")
        proxy = start(lab, {
            "api": [{"host": "api.test", "port": api.port, "protocol": "rest", "access": "full",
                     "request_body_credential_rewrite": True}],
            "other": [{"host": "other.test", "port": other.port}]})
        env = dict(os.environ, OPEN_KEY_SOURCE=OPEN_SECRET)
        pushed = ctl(proxy.endpoint, "set-credentials", "--file", write_credentials(lab, api.port),
                     env=env)
        assert pushed.returncode == 0, pushed
        form = f"a=1&token={PH}API_KEY"
        url = f"http://api.test:{api.port}/v1/bot{PH}API_KEY/x?k={PH}OPEN_KEY"
        response, result = via(proxy, url, "-H", f"Authorization: Bearer {PH}API_KEY",
                               "--data-binary", form)
        assert response is not None and response.status == 200, (response, result)
        seen = api.requests()[-1]
        assert seen["headers"]["authorization"] == f"Bearer {SECRET}", seen
        assert seen["query"] == f"k={OPEN_SECRET}", seen
        assert seen["path"] == f"/v1/bot{SECRET}/x", seen
        assert response.json()["body_sha256"] == \
            hashlib.sha256(f"a=1&token={SECRET}".encode()).hexdigest(), response
        # Bound to api.test: refused on other.test; unknown key: 500; marker in a streamed body.
        response, _ = via(proxy, f"http://other.test:{other.port}/", "-H",
                          f"X-K: {PH}API_KEY")
        assert response.status == 403 and response.json()["error"] == \
            "credential_endpoint_mismatch", response
        response, _ = via(proxy, f"http://other.test:{other.port}/", "-H", f"X-K: {PH}NOPE")
        assert response.status == 500 and response.json()["error"] == "credential_unavailable"
        assert other.requests() == []
        # The head of a streamed body has gone upstream by the time its marker shows up; the
        # body stops before it, and the client gets the 500.
        response, _ = via(proxy, f"http://other.test:{other.port}/", "--data-binary",
                          f"x={PH}OPEN_KEY")
        assert response.status == 500 and response.json()["error"] == "credential_unavailable"
        proxy.stop()
        log = proxy.log_text()
        assert "[CREDENTIAL]" in log, log[-3000:]
        assert_no_secret(log)


@test
def bad_credentials_are_refused_without_echoing_values():
    with CredLab() as lab:
        proxy = start(lab, {})
        result = ctl(proxy.endpoint, "set-credentials", f"K={SECRET}\rX")
        assert result.returncode != 0, result
        bad_binding = lab.write("bad.yaml", f"""credentials:
  - key: K
    value: "{SECRET}"
    bindings: [{{host: "a.test", path: "no-slash"}}]
""")
        second = ctl(proxy.endpoint, "set-credentials", "--file", bad_binding)
        assert second.returncode != 0 and "path must start with" in second.stderr, second
        proxy.stop()
        assert_no_secret(result.stdout, result.stderr, second.stdout, second.stderr,
                         proxy.log_text())


@test
def tls_skip_to_a_credentialed_endpoint_is_refused():
    with CredLab() as lab:
        skip = lab.https_origin("skip.test")
        proxy = start(lab, {
            "skip": [{"host": "skip.test", "port": skip.port, "tls": "skip"}],
            "open": [{"host": "api.test", "port": 1, "tls": "skip",
                      "allow_uninspected_credentials": True}]})
        creds = lab.write("c.yaml", f"""credentials:
  - key: SKIPPED
    value: "{SECRET}"
    bindings: [{{host: skip.test}}]
""")
        assert ctl(proxy.endpoint, "set-credentials", "--file", creds).returncode == 0
        response, result = via(proxy, f"https://skip.test:{skip.port}/x")
        assert result.returncode != 0, result
        assert b"uninspected_credentials" in result.stderr or response is None or \
            response.status == 403, (response, result)
        assert skip.requests() == []
        assert "credentialed endpoint requires L7 inspection" in proxy.log_text()


SANDBOX_BASE = tempfile.mkdtemp(prefix="openshell-cred-sandbox-", dir="/var/tmp")
os.chmod(SANDBOX_BASE, 0o755)
atexit.register(shutil.rmtree, SANDBOX_BASE, True)


@test
def sandbox_child_sees_placeholders_and_the_origin_gets_the_secret():
    if subprocess.run([BIN, "sandbox", "--help"], capture_output=True).returncode != 0:
        return  # a build without the runtime: nothing to check
    maker = test_pki.Pki(tempfile.mkdtemp(prefix="pki-", dir=SANDBOX_BASE))
    root = maker.ca("root", "OpenShell Credentials Sandbox Root")
    leaf = maker.leaf("origin", ["origin.test"], root, ips=("127.0.0.2",))
    secret_file = os.path.join(SANDBOX_BASE, "file-secret")
    with open(secret_file, "w") as handle:
        handle.write(OPEN_SECRET + "\n")
    with Lab() as lab:
        origin = OriginProcess(lab.dir, "sbx", "127.0.0.2", leaf.cert, leaf.key)
        lab.origins.append(origin)
        policy_path = os.path.join(SANDBOX_BASE, "policy.yaml")
        with open(policy_path, "w") as handle:
            handle.write(f"""version: 1
filesystem_policy:
  include_workdir: false
  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]
  read_write: [/tmp, /dev/null]
network_policies:
  local:
    endpoints:
      - {{host: "127.0.0.2", port: {origin.port}, protocol: rest, access: full}}
    binaries:
      - {{path: "/usr/bin/*"}}
""")
        os.chmod(policy_path, 0o644)
        url = f"https://127.0.0.2:{origin.port}/echo"
        script = ("env; "
                  f"/usr/bin/curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 10 "
                  f"-H \"Authorization: Bearer $API_KEY\" -H \"X-File: $FILE_KEY\" {url}; "
                  "/usr/bin/python3 -c \"import os,urllib.request;"
                  f"r=urllib.request.Request('{url}?k='+os.environ['API_KEY']);"
                  "print(urllib.request.urlopen(r, timeout=10).status)\"")
        env = dict(os.environ, SRC_SECRET=SECRET)
        result = subprocess.run(
            [BIN, "sandbox", "--log-format", "json", "--allow-loopback-upstream", "--policy",
             policy_path, "--upstream-ca", root.cert, "--credential", "API_KEY=SRC_SECRET",
             "--credential", f"FILE_KEY=@{secret_file}", "--log-level", "info", "--",
             "/bin/sh", "-c", script],
            capture_output=True, text=True, errors="replace", timeout=60, cwd=SANDBOX_BASE,
            env=env)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert f"API_KEY={PH}API_KEY" in lines and f"FILE_KEY={PH}FILE_KEY" in lines, lines
        assert lines[-2:] == ["200", "200"], result.stdout + result.stderr[-3000:]
        assert not any(line.startswith("SRC_SECRET=") for line in lines), lines
        seen = origin.requests()
        assert seen[0]["headers"]["authorization"] == f"Bearer {SECRET}", seen
        assert seen[0]["headers"]["x-file"] == OPEN_SECRET, seen
        assert seen[1]["query"] == f"k={SECRET}", seen
        assert_no_secret(result.stdout, result.stderr)


if __name__ == "__main__":
    main()
