"""What test_ssh.py and test_ssh_access.py share: client keys, and `openshell sandbox --ssh`
running until the test ends, with OpenSSH's client pointed at it (through socat for a unix
socket, straight to the port for TCP).
"""
import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from proxy_fixture import AS_NOBODY, rootless_binary
from tap import BIN

# Outside /tmp, which the sandbox replaces with its own.
BASE = tempfile.mkdtemp(prefix="openshell-ssh-test-", dir="/var/tmp")
os.chmod(BASE, 0o755)
atexit.register(shutil.rmtree, BASE, True)


def keypair(name, mode=0o600):
    path = os.path.join(BASE, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    os.chmod(path, mode)
    return path


GOOD_KEY = keypair("good")
BAD_KEY = keypair("bad")
AUTHORIZED = os.path.join(BASE, "authorized_keys")
shutil.copy(GOOD_KEY + ".pub", AUTHORIZED)


def write_policy(text):
    path = os.path.join(BASE, f"policy-{time.monotonic_ns()}.yaml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def sandbox_argv(policy_path, listen, *extra, command=("/bin/sleep", "120"), binary=BIN):
    return [binary, "sandbox", "--log-format", "json", "--log-level", "info", "--policy",
            policy_path, "--ssh", listen, "--ssh-authorized-keys", AUTHORIZED, *extra, "--",
            *command]


class SshSandbox:
    """`openshell sandbox --ssh LISTEN` (default: a fresh unix socket) running `command`, as root
    or (`rootless`) as nobody; ready once the server logged where it listens and its host key."""

    def __init__(self, policy_path, listen=None, extra=(), command=("/bin/sleep", "120"),
                 stdin=None, env=None, rootless=False):
        sockets = os.path.join(BASE, "nobody" if rootless else "root")
        if not os.path.isdir(sockets):
            os.mkdir(sockets)
            os.chown(sockets, 65534 if rootless else 0, 65534 if rootless else 0)
        self.socket = os.path.join(sockets, f"ssh-{time.monotonic_ns()}", "sock")
        listen = listen or "unix:" + self.socket
        prefix, binary = (AS_NOBODY, rootless_binary(BASE)) if rootless else ([], BIN)
        self.log_path = os.path.join(BASE, f"log-{time.monotonic_ns()}")
        self.log = open(self.log_path, "w")
        self.out = open(self.log_path + ".out", "w")
        self.process = subprocess.Popen(
            [*prefix, *sandbox_argv(policy_path, listen, *extra, command=command, binary=binary)],
            stdout=self.out,
            stderr=self.log, cwd=BASE, env=env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            found = [re.match(r"ssh: listening on (\S+); host key (SHA256:\S+)$", m)
                     for m in self.messages()]
            found = [m for m in found if m]
            if found:
                self.address, self.fingerprint = found[0].groups()
                break
            assert self.process.poll() is None, "sandbox exited:\n" + self.log_text()
            assert time.monotonic() < deadline, "no SSH listener:\n" + self.log_text()
            time.sleep(0.05)
        tcp = re.fullmatch(r"tcp:(\d+\.\d+\.\d+\.\d+):(\d+)", self.address)
        self.host, self.port = (tcp.group(1), int(tcp.group(2))) if tcp else (None, None)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def messages(self):
        """The `message` of every JSON log line so far."""
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line).get("message", ""))
            except ValueError:
                out.append(line)
        return out

    def client_options(self, key=GOOD_KEY, options=()):
        """OpenSSH client arguments reaching this server with `key`; `options` are -o values
        (a StrictHostKeyChecking among them replaces the default of trusting any host key)."""
        argv = ["-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR"]
        if self.port:
            argv += ["-p", str(self.port)]
        else:
            argv += ["-o", f"ProxyCommand=socat - UNIX-CONNECT:{self.socket}"]
        if not any(o.startswith("StrictHostKeyChecking") for o in options):
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        for option in options:
            argv += ["-o", option]
        return argv

    def target(self):
        return self.host or "sandbox"

    def ssh(self, command, key=GOOD_KEY, stdin=None, timeout=30, tty="-T", options=(),
            extra=()):
        argv = ["ssh", tty, *self.client_options(key, options), *extra, self.target()] + \
            (["--", command] if command else [])
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
        self.out.close()
