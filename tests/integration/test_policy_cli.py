"""`openshell policy check|eval` and the CLI's usage contract, driven through the real binary."""
import glob
import json
import os
import tempfile

from tap import BIN, SOURCE_ROOT, SPECS_DIR, main, run, test

EXAMPLES = sorted(glob.glob(os.path.join(SOURCE_ROOT, "examples", "policies", "*")))
CORPUS = sorted(glob.glob(os.path.join(SPECS_DIR, "openshell-policies", "*.yaml")))

POLICY = """version: 1
network_policies:
  github:
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: read-only
    binaries: [{ path: /usr/bin/curl }]
  docs:
    endpoints:
      - { host: "*.example.com", port: 443 }
"""


def write(text, suffix=".yaml"):
    handle = tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False)
    handle.write(text)
    handle.close()
    return handle.name


def assert_usage_error(result):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "--help" in lines[0], lines[0]
    assert result.stdout == "", result.stdout


@test
def version_and_help():
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("openshell "), version
    for args in (["--help"], ["policy", "--help"], ["policy", "eval", "--help"]):
        result = run(*args)
        assert result.returncode == 0, (args, result)
        assert "Usage" in result.stdout or "usage" in result.stdout.lower(), result.stdout
    assert "--json" in run("policy", "eval", "--help").stdout


@test
def usage_errors_exit_2_with_one_line_and_hint():
    policy = write(POLICY)
    for args in (
        [],
        ["--no-such-flag"],
        ["nosuchcommand"],
        ["policy"],
        ["policy", "check"],
        ["policy", "eval", policy, "--host", "a.com"],
        ["policy", "eval", policy, "--host", "a.com", "--port", "70000"],
        ["policy", "eval", policy, "--host", "a.com", "--port", "x"],
        ["policy", "eval", policy, "--host", "a.com", "--port", "443", "--method", "GET"],
        ["policy", "eval", policy, "--host", "a.com", "--port", "443", "--bogus"],
    ):
        assert_usage_error(run(*args))


@test
def check_accepts_the_reference_corpus_unchanged():
    assert len(CORPUS) >= 7, CORPUS
    result = run("policy", "check", *CORPUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": valid") == len(CORPUS), result.stdout


@test
def check_accepts_every_example_policy():
    assert len(EXAMPLES) >= 5, EXAMPLES
    assert all(path.endswith(".yaml") for path in EXAMPLES), EXAMPLES
    result = run("policy", "check", *EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr


@test
def check_reports_located_errors():
    bad = write("version: 1\nnetwork_policies:\n  github:\n    endpoints:\n"
                "      - host: api.github.com\n        port: 443\n        protocol: rest\n"
                "        rules: []\n")
    result = run("policy", "check", bad)
    assert result.returncode == 1, result
    expected = f"{bad}:8:16: error: network_policies.github.endpoints[0].rules: rules list cannot be empty"
    assert expected in result.stderr, result.stderr
    assert f"{bad}: invalid" in result.stdout


@test
def check_mixed_files_exit_1_and_reports_each():
    good = write(POLICY)
    bad = write("version: 1\nunknown_section: {}\n")
    result = run("policy", "check", good, bad)
    assert result.returncode == 1
    assert f"{good}: valid" in result.stdout and f"{bad}: invalid" in result.stdout
    assert "unknown field `unknown_section`" in result.stderr


@test
def check_survives_garbage():
    samples = [b"\x00\xff\xfe", b"[" * 50000, b"{a: " * 1000, b"version: 1\n" + b"x: &a [*a]\n",
               b"\xef\xbb\xbfversion: 1\n", os.urandom(4096)]
    for data in samples:
        path = write("")
        with open(path, "wb") as handle:
            handle.write(data)
        result = run("policy", "check", path)
        assert result.returncode in (0, 1), (data[:20], result.returncode, result.stderr[-500:])


@test
def eval_json_contract_allow_and_deny():
    policy = write(POLICY)
    allow = run("policy", "eval", policy, "--host", "API.github.com", "--port", "443",
                "--binary", "/usr/bin/curl", "--json")
    assert allow.returncode == 0, allow
    lines = allow.stdout.strip().splitlines()
    assert len(lines) == 1, allow.stdout
    decision = json.loads(lines[0])
    assert set(decision) == {"action", "matched_policy", "reason", "layer"}, decision
    assert decision["action"] == "allow" and decision["matched_policy"] == "github"
    assert decision["layer"] == "l4" and isinstance(decision["reason"], str)

    deny = json.loads(run("policy", "eval", policy, "--host", "evil.com", "--port", "443",
                          "--json").stdout)
    assert deny == {"action": "deny", "matched_policy": None,
                    "reason": "endpoint evil.com:443 is not allowed by any policy",
                    "layer": "l4"}, deny

    wrong_binary = json.loads(run("policy", "eval", policy, "--host", "api.github.com", "--port",
                                  "443", "--binary", "/usr/bin/wget", "--json").stdout)
    assert wrong_binary["action"] == "deny" and wrong_binary["matched_policy"] is None
    assert "binary '/usr/bin/wget' not allowed in policy 'github'" in wrong_binary["reason"]


@test
def eval_l7_request_decisions():
    policy = write(POLICY)
    base = ["policy", "eval", policy, "--host", "api.github.com", "--port", "443", "--json"]
    allowed = json.loads(run(*base, "--method", "GET", "--path", "/repos/a/b").stdout)
    assert allowed == {"action": "allow", "matched_policy": "github", "reason": "",
                       "layer": "l7"}, allowed
    denied = json.loads(run(*base, "--method", "DELETE", "--path", "/repos/a/b").stdout)
    assert denied["action"] == "deny" and denied["matched_policy"] == "github", denied
    assert denied["reason"] == "DELETE /repos/a/b not permitted by policy", denied
    canonical = json.loads(run(*base, "--method", "DELETE", "--path", "/repos/./a/../b").stdout)
    assert canonical["reason"] == "DELETE /repos/b not permitted by policy", canonical
    traversal = json.loads(run(*base, "--method", "GET", "--path", "/../etc").stdout)
    assert traversal["action"] == "deny" and "canonical" in traversal["reason"], traversal


@test
def eval_text_output_and_bad_policy_exit_1():
    policy = write(POLICY)
    text = run("policy", "eval", policy, "--host", "x.example.com", "--port", "443")
    assert text.returncode == 0 and text.stdout.startswith("allow (l4) policy=docs"), text.stdout
    bad = write("version: 1\nnetwork_policies: 5\n")
    result = run("policy", "eval", bad, "--host", "a.com", "--port", "1", "--json")
    assert result.returncode == 1 and result.stdout == "", result
    assert "error" in result.stderr


if __name__ == "__main__":
    main()
