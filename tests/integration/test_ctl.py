"""`openshell ctl` end to end against a running `openshell proxy --control`: the real binaries,
curl and python clients, local origins, one fresh network namespace per test (proxy_fixture.py).

Covers (issue 4, man/openshell-ctl.1): a push flips a request from 403 to 200 without a restart;
a bad push keeps the old policy and prints FILE:LINE:COL errors (exit 1); get-policy, status
(--json), set-credentials (never echoing secrets), get-ca's no-CA refusal; the unix socket's
permissions; TCP control with missing and wrong tokens refused and without a token file a usage
error; mutual TLS; watch-denials streaming denials; exit 3 for a dead endpoint; 200 pushes while
32 keep-alive clients keep requesting lose no connection, and the request after each push is
decided under the new generation.
"""
import json
import os
import socket
import stat
import subprocess
import threading
import time

from proxy_fixture import Lab, policy_yaml, curl, forward_request, read_response, request
from tap import BIN, main, run, test

LOOPBACK = ["--allow-loopback-upstream"]




def control_proxy(lab, control, extra=()):
    """A deny-all proxy serving control on `control`; returns (proxy, endpoint as bound)."""
    proxy = lab.proxy(None, [*LOOPBACK, "--control", control, *extra])
    event = proxy.wait_for(lambda e: "control" in e.get("unmapped", {}), what="control event")
    return proxy, event["unmapped"]["control"]


def unix_proxy(lab):
    return control_proxy(lab, "unix:" + os.path.join(lab.dir, "ctl", "control.sock"))


def ctl(endpoint, *args, token_file=None, timeout=30):
    argv = ["ctl", "--endpoint", endpoint]
    if token_file:
        argv += ["--token-file", token_file]
    return run(*argv, *args, timeout=timeout)


def http_code(proxy, url):
    result = curl("-x", f"http://127.0.0.1:{proxy.port}", "-o", "/dev/null", "-w",
                  "%{http_code}", url)
    return result.stdout.decode()


@test
def push_flips_403_to_200_without_restart_and_bad_push_keeps_old_policy():
    with Lab() as lab:
        origin = lab.origin()
        proxy, endpoint = unix_proxy(lab)
        url = f"http://origin.test:{origin.port}/x"
        assert http_code(proxy, url) == "403"

        good = lab.write("good.yaml", policy_yaml({"local": [{"host": "origin.test",
                                                               "port": origin.port}]}))
        result = ctl(endpoint, "push-policy", good)
        assert result.returncode == 0, result
        assert result.stdout == "policy accepted: generation 1\n", result
        assert http_code(proxy, url) == "200"
        assert origin.request_count() == 1

        bad = lab.write("bad.yaml", policy_yaml({"local": [{"host": "origin.test",
                                                              "port": origin.port, "bogus": 1},
                                                             {"host": "x.test", "port": 0}]}))
        result = ctl(endpoint, "push-policy", bad)
        assert result.returncode == 1, result
        lines = result.stderr.splitlines()
        assert lines[0].startswith(f"{bad}:5:"), result.stderr
        assert ": error: network_policies.local.endpoints[0].bogus: unknown field" in lines[0], \
            result.stderr
        assert any(line.startswith(f"{bad}:6:") and ": error: " in line for line in lines), \
            result.stderr
        assert lines[-1] == f"{bad}: policy refused ({len(lines) - 1} error(s)); generation 1 " \
                            "stays active", result.stderr
        assert http_code(proxy, url) == "200"

        result = ctl(endpoint, "get-policy")
        assert result.returncode == 0 and result.stdout == open(good).read(), result
        assert proxy.alive()


@test
def status_credentials_ca_and_socket_permissions():
    with Lab() as lab:
        ca_out = os.path.join(lab.dir, "ca.pem")
        proxy, endpoint = control_proxy(
            lab, "unix:" + os.path.join(lab.dir, "ctl", "control.sock"), ["--ca-out", ca_out])
        path = endpoint[len("unix:"):]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700

        env = dict(os.environ, FROM_ENV_SECRET="env-secret-value")
        creds = lab.write("creds.env", "# comment\nFILE_KEY=file-secret-value\n")
        result = subprocess.run([BIN, "ctl", "--endpoint", endpoint, "set-credentials",
                                 "CLI_KEY=cli-secret-value", "--from-env", "FROM_ENV_SECRET",
                                 "--file", creds], capture_output=True, text=True, env=env,
                                timeout=30)
        assert result.returncode == 0, result
        assert result.stdout.splitlines() == [
            "CLI_KEY=openshell:resolve:env:CLI_KEY", "FILE_KEY=openshell:resolve:env:FILE_KEY",
            "FROM_ENV_SECRET=openshell:resolve:env:FROM_ENV_SECRET"], result
        result = ctl(endpoint, "set-credentials", "bad-key=x")
        assert result.returncode == 1 and "credential key 'bad-key'" in result.stderr, result

        routes = lab.write("routes.yaml", "routes:\n  - {route: r1, endpoint: "
                           "'https://api.example/v1', model: m, protocols: [openai_chat_completions],"
                           " api_key: route-secret-value}\n")
        result = ctl(endpoint, "set-routes", routes)
        assert result.returncode == 0 and "1 inference route(s)" in result.stdout, result

        result = ctl(endpoint, "status", "--json")
        assert result.returncode == 0, result
        status = json.loads(result.stdout)
        assert status["generation"] == 0 and status["policy_digest"] == "", status
        assert status["listeners"] == [f"127.0.0.1:{proxy.port}"], status
        assert status["credential_keys"] == ["CLI_KEY", "FILE_KEY", "FROM_ENV_SECRET"], status
        assert status["route_names"] == ["r1"], status
        assert "secret-value" not in result.stdout
        human = ctl(endpoint, "status")
        assert human.returncode == 0 and "policy generation:  0" in human.stdout, human
        assert "secret-value" not in human.stdout + proxy.log_text()

        result = ctl(endpoint, "get-ca")
        assert result.returncode == 0, result
        assert result.stdout.startswith("-----BEGIN CERTIFICATE-----"), result
        assert result.stdout == open(ca_out).read(), result


@test
def tcp_control_requires_a_token_and_refuses_missing_or_wrong_ones():
    with Lab() as lab:
        result = run("proxy", "--listen", "127.0.0.1:0", "--control", "tcp:127.0.0.1:0")
        assert result.returncode == 2, result
        assert "--control-token-file" in result.stderr, result

        token = lab.write("token", "tok-123\n")  # the trailing newline is not part of the token
        proxy, endpoint = control_proxy(lab, "tcp:127.0.0.1:0", ["--control-token-file", token])
        assert endpoint.startswith("tcp:127.0.0.1:") and not endpoint.endswith(":0"), endpoint

        missing = ctl(endpoint, "status")
        assert missing.returncode == 1, missing
        assert "missing authorization" in missing.stderr, missing
        wrong = ctl(endpoint, "push-policy", lab.write("p.yaml", "version: 1\n"),
                    token_file=lab.write("wrong", "tok-124\n"))
        assert wrong.returncode == 1 and "invalid bearer token" in wrong.stderr, wrong
        good = ctl(endpoint, "status", "--json", token_file=token)
        assert good.returncode == 0, good
        assert json.loads(good.stdout)["generation"] == 0
        assert proxy.alive()


def make_pki(lab):
    """A CA with a server cert (IP 127.0.0.1) and a client cert, plus a client cert of another CA."""
    def sh(*argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=30, cwd=lab.dir)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        sh("openssl", "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days",
           "2", "-subj", f"/CN={ca}")
    lab.write("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "extendedKeyUsage=serverAuth\n")
    lab.write("client.ext", "extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("rogue", "rogue-ca", "client.ext")):
        sh("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
           f"/CN={name}")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
           f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext)
    return lambda name: os.path.join(lab.dir, name)


@test
def tcp_control_with_mutual_tls_refuses_unknown_clients():
    with Lab() as lab:
        pki = make_pki(lab)
        proxy, endpoint = control_proxy(lab, "tcp:127.0.0.1:0", [
            "--control-tls-cert", pki("server.pem"), "--control-tls-key", pki("server.key"),
            "--control-tls-client-ca", pki("ca.pem")])

        def mtls(cert, key):
            return ["--tls-ca", pki("ca.pem"), "--tls-cert", pki(cert), "--tls-key", pki(key)]

        good = run("ctl", "--endpoint", endpoint, *mtls("client.pem", "client.key"), "status",
                   "--json", timeout=30)
        assert good.returncode == 0, good
        assert json.loads(good.stdout)["generation"] == 0
        rogue = run("ctl", "--endpoint", endpoint, *mtls("rogue.pem", "rogue.key"), "push-policy",
                    lab.write("p.yaml", "version: 1\n"), timeout=30)
        assert rogue.returncode != 0, rogue
        plain = ctl(endpoint, "status")
        assert plain.returncode != 0, plain
        partial = run("ctl", "--endpoint", endpoint, "--tls-ca", pki("ca.pem"), "status")
        assert partial.returncode == 2, partial
        result = run("proxy", "--listen", "127.0.0.1:0", "--control", "tcp:127.0.0.1:0",
                     "--control-tls-cert", pki("server.pem"))
        assert result.returncode == 2, result
        status = json.loads(run("ctl", "--endpoint", endpoint, *mtls("client.pem", "client.key"),
                                "status", "--json").stdout)
        assert status["generation"] == 0 and status["counters"]["policy_pushes"] == 0, status
        assert proxy.alive()


@test
def watch_denials_streams_denials():
    with Lab() as lab:
        proxy, endpoint = unix_proxy(lab)
        watcher = subprocess.Popen([BIN, "ctl", "--endpoint", endpoint, "watch-denials", "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 10
            # The watch may subscribe after the first denial: keep denying until one shows up.
            while not lines and time.monotonic() < deadline:
                assert http_code(proxy, "http://blocked.test:8080/x") == "403"
                time.sleep(0.1)
            assert lines, watcher.stderr.read() if watcher.poll() is not None else "no denial"
            update = json.loads(lines[0])
            assert update["type"] == "event", update
            assert update["host"] == "blocked.test" and update["port"] == 8080, update
            assert update["stage"] == "forward", update
            assert "not allowed by policy" in update["reason"], update  # deny-all
        finally:
            watcher.terminate()
            watcher.wait(timeout=5)


@test
def dead_endpoint_exits_3_naming_it_and_usage_errors_exit_2():
    with Lab() as lab:
        dead = "unix:" + os.path.join(lab.dir, "nothing.sock")
        result = ctl(dead, "status")
        assert result.returncode == 3, result
        assert f"cannot connect to control endpoint {dead}" in result.stderr, result
        result = ctl("tcp:127.0.0.1:1", "status")
        assert result.returncode == 3, result
        assert "cannot connect to control endpoint tcp:127.0.0.1:1" in result.stderr, result
        for argv in (["ctl", "status"] + ["--bogus"], ["ctl", "--endpoint", "x:y", "status"],
                     ["ctl", "push-policy"], ["ctl", "set-credentials"]):
            result = run(*argv)
            assert result.returncode == 2, (argv, result)


@test
def pushes_under_load_lose_no_connection_and_decide_under_the_current_generation():
    with Lab() as lab:
        origin = lab.origin()
        # socketserver listens with a backlog of 5: 32 clients' upstream connects would overflow
        # it and wait out SYN retransmits. listen() again raises the backlog in place.
        origin.server.socket.listen(128)
        proxy, endpoint = unix_proxy(lab)
        base = {"host": "origin.test", "port": origin.port}
        # Policy 0 admits origin.test only; policy 1 also other.test. Keep-alive clients use
        # origin.test (admitted by both: their connections must survive every push); after each
        # push returns, a probe for other.test must be decided under the new generation.
        policies = [lab.write("p0.yaml", policy_yaml({"local": [base]})),
                    lab.write("p1.yaml", policy_yaml({"local": [base], "other": [
                        {"host": "other.test", "port": origin.port}]}))]
        assert ctl(endpoint, "push-policy", policies[0]).returncode == 0

        stop = threading.Event()
        failures, counts = [], [0] * 32

        def client(index):
            try:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
                    while not stop.is_set():
                        sock.sendall(f"GET http://origin.test:{origin.port}/c{index} HTTP/1.1\r\n"
                                     f"Host: origin.test:{origin.port}\r\n\r\n".encode())
                        response = read_response(sock, timeout=10)
                        assert response.status == 200, response
                        counts[index] += 1
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(f"client {index}: {error!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        probe = forward_request("GET", f"http://other.test:{origin.port}/probe",
                                f"other.test:{origin.port}")
        try:
            for i in range(1, 201):
                result = ctl(endpoint, "push-policy", policies[i % 2])
                assert result.returncode == 0, result
                assert result.stdout == f"policy accepted: generation {i + 1}\n", result
                status = request(proxy.port, probe).status
                assert status == (200 if i % 2 else 403), (i, status)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
        assert not failures, failures[:5]
        assert all(count > 0 for count in counts), counts
        status = json.loads(ctl(endpoint, "status", "--json").stdout)
        assert status["generation"] == 201, status
        assert status["counters"]["policy_pushes"] == 201, status


if __name__ == "__main__":
    main()
