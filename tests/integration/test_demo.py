"""The README quick start keeps working: examples/demo/run.sh (the live part of
packaging/demo.sh) against the built binary, inside a fresh network namespace holding only `lo`
(proxy_fixture.Lab), so its origin on 127.0.0.2:8443 clashes with nothing and nothing reaches
beyond loopback. Needs root, openssl, python3 and Debian's curl.
"""
import json
import os
import subprocess

from proxy_fixture import Lab
from tap import BIN, SOURCE_ROOT, main, test

RUN = os.path.join(SOURCE_ROOT, "examples", "demo", "run.sh")


def demo_dirs():
    return {name for name in os.listdir("/var/tmp") if name.startswith("openshell-demo-")}


def run_demo(log_format="text"):
    before = demo_dirs()
    env = dict(os.environ, OPENSHELL_DEMO_LOG_FORMAT=log_format)
    with Lab():
        result = subprocess.run(["bash", RUN, BIN], capture_output=True, text=True,
                                errors="replace", timeout=120, cwd=SOURCE_ROOT, env=env)
    result.left_behind = demo_dirs() - before
    return result


_result = []


def demo():
    """The demo's output, run once for every test below."""
    if not _result:
        _result.append(run_demo())
    return _result[0]


def describe(result):
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"


@test
def the_demo_exits_0():
    result = demo()
    assert result.returncode == 0, describe(result)


@test
def the_allowed_request_gets_the_origins_answer():
    result = demo()
    assert "hello from the demo origin" in result.stdout, describe(result)
    assert "-> HTTP 200" in result.stdout, describe(result)
    assert "the origin saw" not in result.stdout, "a refused request reached the origin"


@test
def the_denied_request_gets_the_proxys_403():
    result = demo()
    assert "-> HTTP 403" in result.stdout, describe(result)
    assert '"error":"policy_denied"' in result.stdout, describe(result)
    assert "POST /admin/users blocked by deny rule" in result.stdout, describe(result)


@test
def the_sandbox_ends_with_the_denial_summary():
    result = demo()
    lines = [line for line in result.stderr.splitlines() if "denial summary:" in line]
    assert len(lines) == 1, describe(result)
    line = lines[0]
    for part in ("127.0.0.2:8443", "binary=/usr/bin/curl", "count=1", "stage=l7-deny",
                 "POST /admin/users blocked by deny rule"):
        assert part in line, f"{part!r} not in {line!r}"


@test
def nothing_is_left_behind():
    result = demo()
    assert not result.left_behind, f"left in /var/tmp: {sorted(result.left_behind)}"


@test
def with_json_logs_the_summary_is_one_json_event_and_nothing_else_is_plain_text():
    result = run_demo("json")
    assert result.returncode == 0, describe(result)
    events = []
    for line in result.stderr.splitlines():
        if line.strip():
            events.append(json.loads(line))  # every line openshell writes is JSON
    runs = [e for e in events if e.get("unmapped", {}).get("scope") == "run"]
    assert len(runs) == 1, describe(result)
    fields = runs[0]["unmapped"]
    assert fields["binary"] == "/usr/bin/curl" and fields["count"] == "1", runs[0]
    assert fields["denial_stage"] == "l7-deny", runs[0]
    assert runs[0]["dst_endpoint"] == {"ip": "127.0.0.2", "port": 8443}, runs[0]
    assert runs[0]["status_detail"] == "POST /admin/users blocked by deny rule", runs[0]


if __name__ == "__main__":
    main()
