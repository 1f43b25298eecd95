"""`openshell sandbox` end to end: the proxy in-process, the runtime's sandbox with the proxy's
listener inside its network namespace, binary identity from procfs, hot reload over --control.

Every test runs inside a fresh network namespace holding only `lo` (proxy_fixture.Lab), so
nothing a sandbox or its proxy does can reach beyond loopback. Origins listen on 127.0.0.2:
NO_PROXY covers localhost and 127.0.0.1 only, so the sandbox's clients go through the proxy, which
needs --allow-loopback-upstream to dial them. Probes are Debian's curl and /usr/bin/python3.
"""
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time

import test_pki
from https_origin import OriginProcess
from proxy_fixture import Lab
from tap import BIN, main, test

PY = "/usr/bin/python3"  # Debian's: a python3 earlier on PATH may be unreadable to the sandbox
CURL = "/usr/bin/curl"
ORIGIN_IP = "127.0.0.2"
SANDBOX_UID = 1500

# The sandbox's cwd and policies live outside /tmp, which the sandbox replaces with its own.
BASE = tempfile.mkdtemp(prefix="openshell-sandbox-test-", dir="/var/tmp")
os.chmod(BASE, 0o755)
atexit.register(shutil.rmtree, BASE, True)


def policy(network, read_only=()):
    """A policy with `network` ({key: (endpoints, binaries)}) and a fixed filesystem section."""
    ro = ["/usr", "/lib", "/etc", "/proc", "/dev/urandom", *read_only]
    lines = ["version: 1", "filesystem_policy:", "  include_workdir: false",
             f"  read_only: [{', '.join(ro)}]", "  read_write: [/tmp, /dev/null]",
             "process:", f'  run_as_user: "{SANDBOX_UID}"', f'  run_as_group: "{SANDBOX_UID}"',
             "network_policies:"]
    for key, (endpoints, binaries) in network.items():
        lines += [f"  {key}:", "    endpoints:"]
        lines += [f"      - {{host: \"{host}\", port: {port}}}" for host, port in endpoints]
        lines += ["    binaries:"] + [f"      - {{path: \"{b}\"}}" for b in binaries]
    if not network:
        lines[-1] = "network_policies: {}"
    return "\n".join(lines) + "\n"


_counter = [0]


def write(text, suffix=".yaml"):
    _counter[0] += 1
    path = os.path.join(BASE, f"f{_counter[0]}{suffix}")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def sandbox_argv(policy_text, cmd, args=()):
    argv = [BIN, "sandbox", "--log-format", "json", "--allow-loopback-upstream"]
    if policy_text is not None:
        argv += ["--policy", write(policy_text)]
    return [*argv, *args, "--", *cmd]


def sandbox(policy_text, cmd, args=(), timeout=60):
    return subprocess.run(sandbox_argv(policy_text, cmd, args), capture_output=True, text=True,
                          errors="replace", timeout=timeout, cwd=BASE)


def check(result, code=0):
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr[-4000:]}")


def status_of(url, client="curl"):
    """Shell/python snippet printing the HTTP status the sandboxed client gets for `url`."""
    if client == "curl":
        return f"{CURL} -s -o /dev/null -w '%{{http_code}}\\n' --max-time 10 {url}"
    code = ("import urllib.request,urllib.error,sys\n"
            "try:\n"
            f"  print(urllib.request.urlopen('{url}', timeout=10).status)\n"
            "except urllib.error.HTTPError as e:\n"
            "  print(e.code)\n")
    return f"{PY} -c \"{code}\""


@test
def allowed_origin_is_reached_and_a_denied_host_gets_403():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        other = lab.origin(host="127.0.0.3")
        text = policy({"local": ([(ORIGIN_IP, origin.port)], ["/usr/bin/*"])})
        script = "; ".join([status_of(f"http://{ORIGIN_IP}:{origin.port}/allowed"),
                            status_of(f"http://127.0.0.3:{other.port}/denied")])
        result = sandbox(text, ["/bin/sh", "-c", script])
        check(result)
        assert result.stdout.split() == ["200", "403"], result.stdout + result.stderr[-3000:]
        assert origin.request_count() == 1 and other.request_count() == 0
        assert "127.0.0.3" in result.stderr, "the denial is logged"


@test
def https_is_intercepted_with_the_ca_the_child_was_given():
    pki_dir = tempfile.mkdtemp(prefix="pki-", dir=BASE)
    maker = test_pki.Pki(pki_dir)
    root = maker.ca("root", "OpenShell Sandbox Test Root CA")
    leaf = maker.leaf("origin", ["origin.test"], root, ips=(ORIGIN_IP,))
    with Lab() as lab:
        origin = OriginProcess(lab.dir, "https", ORIGIN_IP, leaf.cert, leaf.key)
        try:
            text = policy({"local": ([(ORIGIN_IP, origin.port)], ["/usr/bin/*"])})
            url = f"https://{ORIGIN_IP}:{origin.port}/echo"
            # curl trusts only what the sandbox points it at (CURL_CA_BUNDLE): our CA.
            script = (f"{CURL} -sS -o /dev/null -w '%{{http_code}} %{{ssl_verify_result}}\\n' "
                      f"--max-time 10 {url}")
            result = sandbox(text, ["/bin/sh", "-c", script],
                             args=["--upstream-ca", root.cert])
            check(result)
            assert result.stdout.split() == ["200", "0"], result.stdout + result.stderr[-3000:]
            # Terminated by the proxy (intercept_all): the origin saw the proxy's request.
            assert [r["path"] for r in origin.requests()] == ["/echo"], origin.entries()
        finally:
            origin.stop()


def findings(stderr):
    """The Detection Findings in a JSON log."""
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("class_uid") == 2004:
                events.append(event)
    return events


@test
def a_direct_connection_bypassing_the_proxy_fails_at_once_and_is_reported():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        text = policy({"local": ([(ORIGIN_IP, origin.port)], ["/usr/bin/*"])})
        url = f"http://{ORIGIN_IP}:{origin.port}/direct"
        # The Lab's namespace holds only `lo`: TEST-NET-2 is unreachable whatever the sandbox does.
        outside = "198.51.100.7"
        direct = f"{CURL} -sS --noproxy '*' --max-time 10"
        script = "; ".join([f"{status_of(url)}",
                            f"{direct} {url}; echo loopback=$?",
                            f"{direct} http://{outside}:8080/; echo outside=$?",
                            f"{PY} -c \"import socket; socket.socket(socket.AF_INET, "
                            f"socket.SOCK_DGRAM).sendto(b'q', ('{outside}', 53))\"; echo udp=$?"])
        started = time.monotonic()
        result = sandbox(text, ["/bin/sh", "-c", script])
        elapsed = time.monotonic() - started
        check(result)
        lines = result.stdout.split()
        # Through the proxy it works; directly, loopback is the namespace's own and nothing listens
        # there, and the outside is unreachable (curl: 7 couldn't connect; python: exit 1).
        assert lines == ["200", "loopback=7", "outside=7", "udp=1"], result.stdout + result.stderr[-3000:]
        assert elapsed < 10, f"took {elapsed:.1f} s: direct connects should fail at once"
        assert origin.request_count() == 1
        found = findings(result.stderr)
        # One finding per attempt to leave, none for loopback, each naming executable and destination.
        assert len(found) == 2, result.stderr[-3000:]
        tcp, udp = found
        assert tcp["actor"]["process"]["name"] == CURL, tcp
        assert tcp["dst_endpoint"]["ip"] == outside and tcp["dst_endpoint"]["port"] == 8080, tcp
        assert f"BYPASS_DETECT {outside}:8080 proto=tcp binary={CURL}" in tcp["message"], tcp
        assert tcp["finding_info"]["uid"] == "bypass-detect", tcp
        assert udp["actor"]["process"]["name"].startswith("/usr/bin/python3"), udp
        assert f"{outside}:53 proto=udp" in udp["message"], udp
        assert "DNS queries should route through the sandbox proxy" in json.dumps(udp), udp


@test
def binaries_rules_decide_by_the_real_executable():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        text = policy({"python_only": ([(ORIGIN_IP, origin.port)], ["/usr/bin/python3*"])})
        url = f"http://{ORIGIN_IP}:{origin.port}/who"
        script = "; ".join([status_of(url, "python"), status_of(url, "curl")])
        result = sandbox(text, ["/bin/sh", "-c", script])
        check(result)
        assert result.stdout.split() == ["200", "403"], result.stdout + result.stderr[-3000:]
        assert origin.request_count() == 1
        # The denial names the binary the proxy found, not one the client claimed.
        assert "/usr/bin/curl" in result.stderr, result.stderr[-3000:]


@test
def an_ancestor_rule_admits_its_descendants_but_never_openshell_itself():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        url = f"http://{ORIGIN_IP}:{origin.port}/tree"
        own_binary = os.path.realpath(BIN)  # the sandbox's init: above the workload, never in it
        text = policy({"via_bash": ([(ORIGIN_IP, origin.port)], ["/usr/bin/bash", own_binary])})
        # `; true` keeps each shell from exec'ing curl in its place: curl is then its child.
        script = "; ".join([f"/bin/bash -c \"{status_of(url)}; true\"",
                            f"/bin/sh -c \"{status_of(url)}; true\""])
        result = sandbox(text, ["/bin/sh", "-c", script])
        check(result)
        assert result.stdout.split() == ["200", "403"], result.stdout + result.stderr[-3000:]


@test
def a_binary_replaced_after_first_use_is_denied_with_the_reason():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        url = f"http://{ORIGIN_IP}:{origin.port}/tofu"
        text = policy({"copied_curl": ([(ORIGIN_IP, origin.port)], ["/tmp/c"])})
        get = f"/tmp/c -s -w '\\n%{{http_code}}\\n' --max-time 10 {url}"
        # Same path, different content (one more byte): its hash no longer matches first use.
        script = f"cp {CURL} /tmp/c; {get}; echo >> /tmp/c; {get}"
        result = sandbox(text, ["/bin/sh", "-c", script])
        check(result)
        lines = result.stdout.split("\n")
        codes = [line for line in lines if line in ("200", "403")]
        assert codes == ["200", "403"], result.stdout + result.stderr[-3000:]
        assert origin.request_count() == 1
        # The 403 body says only "not permitted" (spec §9); the log says why.
        assert "process identity unavailable: Binary integrity violation" in result.stderr, \
            result.stderr[-3000:]


@test
def ctl_push_policy_flips_a_decision_and_static_changes_are_refused():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        control = os.path.join(lab.dir, "control.sock")
        start = policy({})
        url = f"http://{ORIGIN_IP}:{origin.port}/flip"
        # First request at once (denied), then poll until allowed (or give up after 20 s).
        probe = ("import urllib.request,urllib.error,time,sys\n"
                 "def get():\n"
                 "  try:\n"
                 f"    return urllib.request.urlopen('{url}', timeout=5).status\n"
                 "  except urllib.error.HTTPError as e:\n"
                 "    return e.code\n"
                 "print('first', get(), flush=True)\n"
                 "deadline = time.monotonic() + 20\n"
                 "while time.monotonic() < deadline:\n"
                 "  code = get()\n"
                 "  if code == 200: break\n"
                 "  time.sleep(0.1)\n"
                 "print('final', code, flush=True)\n")
        proc = subprocess.Popen(sandbox_argv(start, [PY, "-c", probe], ["--control", f"unix:{control}"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", cwd=BASE)
        try:
            first = proc.stdout.readline()
            assert first.split() == ["first", "403"], first + proc.stderr.read()[-3000:]
            ctl = [BIN, "ctl", "--endpoint", f"unix:{control}", "push-policy"]
            # Static sections are fixed for the sandbox's life.
            changed = policy({"local": ([(ORIGIN_IP, origin.port)], ["/usr/bin/*"])},
                             read_only=["/var/log"])
            refused = subprocess.run([*ctl, write(changed)], capture_output=True, text=True,
                                     timeout=30)
            assert refused.returncode != 0, refused
            assert "filesystem_policy" in refused.stdout + refused.stderr, refused
            allowed = policy({"local": ([(ORIGIN_IP, origin.port)], ["/usr/bin/*"])})
            pushed = subprocess.run([*ctl, write(allowed)], capture_output=True, text=True,
                                    timeout=30)
            assert pushed.returncode == 0, pushed
            out, err = proc.communicate(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, (proc.returncode, err[-3000:])
        assert out.split() == ["final", "200"], out + err[-3000:]
        assert not os.path.exists(control), "the control socket is removed at exit"


@test
def exit_codes_and_signals_pass_through():
    for cmd, code in ((["/bin/sh", "-c", "exit 7"], 7),
                      (["/bin/sh", "-c", "kill -TERM $$"], 128 + 15),
                      (["/bin/true"], 0),
                      (["/nonexistent/program"], 127)):
        with Lab():
            check(sandbox(None, cmd), code)


@test
def the_child_trusts_the_proxy_ca_and_cannot_read_beyond_its_bundle():
    with Lab():
        script = ("import os,ssl\n"
                  "bundle = os.environ['SSL_CERT_FILE']\n"
                  "pem = open(bundle).read()\n"
                  "print('certs', pem.count('BEGIN CERTIFICATE') > 0)\n"
                  "d = os.path.dirname(bundle)\n"
                  "try:\n"
                  "  os.listdir(d); print('listed')\n"
                  "except OSError: print('unlisted')\n")
        result = sandbox(policy({}), [PY, "-c", script])
        check(result)
        assert result.stdout.split() == ["certs", "True", "unlisted"], result.stdout + result.stderr


if __name__ == "__main__":
    main()
