"""`openshell sandbox --ssh`: OpenSSH's client against the embedded server on its unix socket
(ProxyCommand socat), keys generated here. A session runs inside the running sandbox as the
sandbox user, its egress goes through the same proxy, a key not in authorized_keys is refused.

Every test runs inside a fresh network namespace holding only `lo` (proxy_fixture.Lab).
"""
import atexit
import os
import shutil
import subprocess
import tempfile
import time

from proxy_fixture import Lab
from tap import BIN, main, test

CURL = "/usr/bin/curl"
ORIGIN_IP = "127.0.0.2"
SANDBOX_UID = 1500

# Outside /tmp, which the sandbox replaces with its own.
BASE = tempfile.mkdtemp(prefix="openshell-ssh-test-", dir="/var/tmp")
os.chmod(BASE, 0o755)
atexit.register(shutil.rmtree, BASE, True)


def policy(network):
    """A policy with `network` ({key: (endpoints, binaries)}) (as test_sandbox.py's; importing
    that module would register its tests here too)."""
    lines = ["version: 1", "filesystem_policy:", "  include_workdir: false",
             "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]",
             "  read_write: [/tmp, /dev/null]",
             "process:", f'  run_as_user: "{SANDBOX_UID}"', f'  run_as_group: "{SANDBOX_UID}"',
             "network_policies:"]
    for key, (endpoints, binaries) in network.items():
        lines += [f"  {key}:", "    endpoints:"]
        lines += [f"      - {{host: \"{host}\", port: {port}}}" for host, port in endpoints]
        lines += ["    binaries:"] + [f"      - {{path: \"{b}\"}}" for b in binaries]
    if not network:
        lines[-1] = "network_policies: {}"
    return "\n".join(lines) + "\n"


def write(text):
    path = os.path.join(BASE, f"policy-{time.monotonic_ns()}.yaml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def keypair(name):
    path = os.path.join(BASE, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


GOOD_KEY = keypair("good")
BAD_KEY = keypair("bad")
AUTHORIZED = os.path.join(BASE, "authorized_keys")
shutil.copy(GOOD_KEY + ".pub", AUTHORIZED)


class SshSandbox:
    """`openshell sandbox --ssh` running `sleep` until the test ends."""

    def __init__(self, policy_text):
        self.socket = os.path.join(BASE, f"ssh-{time.monotonic_ns()}", "sock")
        argv = [BIN, "sandbox", "--log-format", "json", "--allow-loopback-upstream",
                "--log-level", "info", "--policy", write(policy_text), "--ssh", "unix:" + self.socket,
                "--ssh-authorized-keys", AUTHORIZED, "--", "/bin/sleep", "120"]
        self.log_path = os.path.join(BASE, f"log-{time.monotonic_ns()}")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log,
                                        cwd=BASE)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            assert self.process.poll() is None, "sandbox exited:\n" + self.log_text()
            assert time.monotonic() < deadline, "no SSH socket:\n" + self.log_text()
            time.sleep(0.05)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def ssh(self, command, key=GOOD_KEY, stdin=None, timeout=30, tty="-T"):
        argv = ["ssh", "-F", "/dev/null", tty, "-i", key,
                "-o", f"ProxyCommand=socat - UNIX-CONNECT:{self.socket}",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "sandbox"] + (["--", command] if command else [])
        return subprocess.run(argv, input=stdin if stdin is not None else "",
                              capture_output=True, text=True, timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@test
def ssh_exec_runs_in_the_sandbox_as_its_user():
    with Lab(), SshSandbox(policy({})) as box:
        result = box.ssh("id -u; readlink /proc/self/ns/net")
        assert result.returncode == 0, result.stderr + box.log_text()[-3000:]
        uid, netns = result.stdout.split()
        assert uid == str(SANDBOX_UID), result.stdout
        assert netns != os.readlink("/proc/self/ns/net"), "the session has the sandbox's netns"
        assert os.stat(box.socket).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(box.socket)).st_mode & 0o777 == 0o700
        assert "SHA256:" in box.log_text(), "the host key's fingerprint is logged"
        # The main process's isolation: seccomp and no_new_privs, and Landlock (the file is
        # world-readable but outside the policy's paths).
        result = box.ssh("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; "
                         f"cat {AUTHORIZED} >/dev/null 2>&1 && echo readable || echo denied")
        assert result.stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", "2", "denied"], \
            result.stdout + result.stderr


@test
def ssh_exit_status_stdin_and_stderr_come_back():
    with Lab(), SshSandbox(policy({})) as box:
        result = box.ssh("cat; echo oops >&2; exit 7", stdin="hello\n")
        assert result.returncode == 7, (result.returncode, result.stderr)
        assert result.stdout == "hello\n", result.stdout
        assert "oops" in result.stderr, result.stderr


@test
def ssh_shell_reads_its_commands_from_stdin():
    with Lab(), SshSandbox(policy({})) as box:
        result = box.ssh(None, stdin="echo from-shell $(id -u)\nexit 3\n")
        assert result.returncode == 3, (result.returncode, result.stderr)
        assert result.stdout == f"from-shell {SANDBOX_UID}\n", result.stdout


@test
def ssh_t_gets_a_pty_as_controlling_terminal():
    with Lab(), SshSandbox(policy({})) as box:
        # -tt: a PTY although our stdin is not a terminal; its size is the default 80x24.
        result = box.ssh("test -t 0 && test -t 1 && echo tty; stty size; "
                         "ps -o tty= -p $$ | grep -q pts && echo ctty", tty="-tt")
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        assert result.stdout.split() == ["tty", "24", "80", "ctty"], repr(result.stdout)


@test
def ssh_wrong_key_is_refused():
    with Lab(), SshSandbox(policy({})) as box:
        result = box.ssh("id -u", key=BAD_KEY)
        assert result.returncode == 255, (result.returncode, result.stdout, result.stderr)
        assert "Permission denied" in result.stderr, result.stderr
        assert result.stdout == ""
        assert "public key refused" in box.log_text()


@test
def ssh_session_egress_goes_through_the_proxy():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        other = lab.origin(host="127.0.0.3")
        text = policy({"local": ([(ORIGIN_IP, origin.port)], ["/usr/bin/*"])})
        with SshSandbox(text) as box:
            status = f"{CURL} -s -o /dev/null -w '%{{http_code}}\\n' --max-time 10 "
            script = (f"{status} http://127.0.0.3:{other.port}/denied; "
                      f"{status} http://{ORIGIN_IP}:{origin.port}/allowed")
            result = box.ssh(script)
            assert result.stdout.split() == ["403", "200"], result.stdout + result.stderr + \
                box.log_text()[-3000:]
            assert other.request_count() == 0 and origin.request_count() == 1


if __name__ == "__main__":
    main()
