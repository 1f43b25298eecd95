"""`openshell sandbox --ssh` access: a TCP listener (port read from the log), a host key from a
file (its fingerprint, a strict known_hosts, a too-open file refused), the per-peer throttle of
failed authentications, the idle timeout, and the --ssh* flags' validation.

Every test runs inside a fresh network namespace holding only `lo` (proxy_fixture.Lab).
"""
import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from proxy_fixture import Lab
from tap import BIN, main, run, test

SANDBOX_UID = 1500
# The server's per-peer limit (kSshMaxFailuresPerPeer).
MAX_FAILURES_PER_PEER = 10

# Outside /tmp, which the sandbox replaces with its own.
BASE = tempfile.mkdtemp(prefix="openshell-ssh-access-test-", dir="/var/tmp")
os.chmod(BASE, 0o755)
atexit.register(shutil.rmtree, BASE, True)

POLICY = os.path.join(BASE, "policy.yaml")
with open(POLICY, "w") as policy_file:
    policy_file.write("\n".join([
        "version: 1", "filesystem_policy:", "  include_workdir: false",
        "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]",
        "  read_write: [/tmp, /dev/null]",
        "process:", f'  run_as_user: "{SANDBOX_UID}"', f'  run_as_group: "{SANDBOX_UID}"',
        "network_policies: {}"]) + "\n")
os.chmod(POLICY, 0o644)


def keypair(name, mode=0o600):
    path = os.path.join(BASE, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    os.chmod(path, mode)
    return path


GOOD_KEY = keypair("good")
BAD_KEY = keypair("bad")
AUTHORIZED = os.path.join(BASE, "authorized_keys")
shutil.copy(GOOD_KEY + ".pub", AUTHORIZED)


def sandbox_argv(listen, *extra, command=("/bin/sleep", "120")):
    return [BIN, "sandbox", "--log-format", "json", "--log-level", "info", "--policy", POLICY,
            "--ssh", listen, "--ssh-authorized-keys", AUTHORIZED, *extra, "--", *command]


class SshSandbox:
    """`openshell sandbox --ssh LISTEN` running `sleep` until the test ends; ready once the
    server logged where it listens."""

    def __init__(self, listen="tcp:127.0.0.1:0", *extra):
        self.log_path = os.path.join(BASE, f"log-{time.monotonic_ns()}")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(sandbox_argv(listen, *extra), stdout=subprocess.DEVNULL,
                                        stderr=self.log, cwd=BASE)
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

    def ssh(self, command, key=GOOD_KEY, options=(), timeout=30, extra=()):
        """OpenSSH's client straight to the TCP listener (no ProxyCommand)."""
        argv = ["ssh", "-F", "/dev/null", "-T", "-i", key, "-p", str(self.port),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        if not any(o.startswith("StrictHostKeyChecking") for o in options):
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        for option in options:
            argv += ["-o", option]
        argv += [*extra, self.host] + (["--", command] if command else [])
        return subprocess.run(argv, input="", capture_output=True, text=True, timeout=timeout)

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
def ssh_tcp_listener_on_an_ephemeral_port_serves_exec():
    with Lab(), SshSandbox("tcp:127.0.0.1:0") as box:
        assert box.port and box.port != 0, box.address
        result = box.ssh("id -u")
        assert result.returncode == 0, result.stderr + box.log_text()[-3000:]
        assert result.stdout.strip() == str(SANDBOX_UID), result.stdout


@test
def ssh_host_key_file_is_the_key_clients_see():
    host_key = keypair(f"host-{time.monotonic_ns()}")
    listed = subprocess.run(["ssh-keygen", "-lf", host_key + ".pub"], capture_output=True,
                            text=True, check=True).stdout.split()
    with Lab(), SshSandbox("tcp:127.0.0.1:0", "--ssh-host-key", host_key) as box:
        assert box.fingerprint == listed[1], (box.fingerprint, listed)
        # A known_hosts holding exactly that key, checked strictly.
        known = os.path.join(BASE, f"known-{time.monotonic_ns()}")
        with open(known, "w") as f:
            f.write("sandbox " + open(host_key + ".pub").read().split(" #")[0])
        strict = ("StrictHostKeyChecking=yes", f"UserKnownHostsFile={known}",
                  "HostKeyAlias=sandbox")
        result = box.ssh("id -u", options=strict)
        assert result.returncode == 0, result.stderr + box.log_text()[-3000:]
        assert result.stdout.strip() == str(SANDBOX_UID)
        # Another key under the same name: the client refuses the server.
        with open(known, "w") as f:
            f.write("sandbox " + open(BAD_KEY + ".pub").read())
        result = box.ssh("id -u", options=strict)
        assert result.returncode == 255 and "verification failed" in result.stderr, \
            (result.returncode, result.stderr)


@test
def ssh_host_key_open_to_others_or_not_a_key_is_refused():
    too_open = keypair(f"host-open-{time.monotonic_ns()}", mode=0o644)
    not_a_key = os.path.join(BASE, f"host-text-{time.monotonic_ns()}")
    with open(not_a_key, "w") as f:
        f.write("not a key\n")
    os.chmod(not_a_key, 0o600)
    public_only = os.path.join(BASE, f"host-public-{time.monotonic_ns()}")
    shutil.copy(GOOD_KEY + ".pub", public_only)
    os.chmod(public_only, 0o600)
    for path, why in ((too_open, "too open"), (not_a_key, "not an OpenSSH private key"),
                      (public_only, "not an OpenSSH private key")):
        with Lab():
            started = time.monotonic()
            result = subprocess.run(sandbox_argv("tcp:127.0.0.1:0", "--ssh-host-key", path),
                                    capture_output=True, text=True, timeout=30, cwd=BASE)
            assert result.returncode != 0, (path, result.returncode, result.stderr)
            assert time.monotonic() - started < 20, "the sandbox did not keep running"
            assert path in result.stderr and why in result.stderr, (path, result.stderr)


@test
def ssh_peer_with_too_many_failures_is_closed_at_accept():
    with Lab(), SshSandbox("tcp:127.0.0.1:0") as box:
        def argv(key, source):
            return ["ssh", "-F", "/dev/null", "-T", "-i", key, "-p", str(box.port), "-b", source,
                    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    box.host, "--", "id -u"]

        # Ten refused keys at once from 127.0.0.1 (each connection tries one key).
        clients = [subprocess.Popen(argv(BAD_KEY, "127.0.0.1"), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(MAX_FAILURES_PER_PEER)]
        for client in clients:
            out, err = client.communicate(timeout=60)
            assert client.returncode == 255 and "Permission denied" in err, \
                (client.returncode, out, err)
        # Now even the good key is turned away before key exchange, twice; one warning.
        for _ in range(2):
            result = subprocess.run(argv(GOOD_KEY, "127.0.0.1"), stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 255, (result.returncode, result.stdout, result.stderr)
            assert "Permission denied" not in result.stderr, result.stderr
            assert result.stdout == ""
        warnings = [m for m in box.messages() if "127.0.0.1 failed to authenticate" in m]
        assert len(warnings) == 1, box.log_text()[-3000:]
        # Another peer address is counted on its own.
        result = subprocess.run(argv(GOOD_KEY, "127.0.0.2"), stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.strip() == str(SANDBOX_UID), \
            (result.returncode, result.stderr)


@test
def ssh_connection_without_channels_is_closed_when_idle():
    with Lab(), SshSandbox("tcp:127.0.0.1:0", "--ssh-idle-timeout", "2") as box:
        started = time.monotonic()
        # -N: authenticated, but no channel is ever opened; the client would wait forever.
        result = box.ssh(None, extra=("-N",), timeout=20)
        elapsed = time.monotonic() - started
        assert result.returncode == 255, (result.returncode, result.stderr)
        assert 1.5 <= elapsed <= 10, elapsed
        assert any("idle" in m for m in box.messages()), box.log_text()[-3000:]


@test
def ssh_flags_are_validated():
    cases = [
        (["--ssh", "tcp:nonsense"], "HOST:PORT"),
        (["--ssh", "tcp:localhost:22"], "IPv4"),
        (["--ssh", "tcp:127.0.0.1:65536"], "PORT"),
        (["--ssh", "tcp:::1:22"], "brackets"),
        (["--ssh", "ftp:x"], "neither unix:PATH nor tcp:HOST:PORT"),
        (["--ssh", "unix:"], "path"),
        (["--ssh", "tcp:127.0.0.1:0", "--ssh-idle-timeout", "-1"], "--ssh-idle-timeout"),
        (["--ssh", "tcp:127.0.0.1:0", "--ssh-idle-timeout", "soon"], "--ssh-idle-timeout"),
        (["--ssh", "tcp:127.0.0.1:0"], "--ssh-authorized-keys"),
    ]
    for flags, why in cases:
        keys = [] if "--ssh-authorized-keys" == why else ["--ssh-authorized-keys", AUTHORIZED]
        result = run("sandbox", *flags, *keys, "--", "/bin/true")
        assert result.returncode == 2, (flags, result.returncode, result.stderr)
        assert why in result.stderr, (flags, result.stderr)


if __name__ == "__main__":
    main()
