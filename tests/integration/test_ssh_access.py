"""`openshell sandbox --ssh` access: a TCP listener (port read from the log), a host key from a
file (its fingerprint, a strict known_hosts, a too-open file refused), the per-peer throttle of
failed authentications, the idle timeout, and the --ssh* flags' validation.

Every test runs inside a fresh network namespace holding only `lo` (proxy_fixture.Lab).
"""
import os
import shutil
import subprocess
import time

from proxy_fixture import Lab
from ssh_fixture import (AUTHORIZED, BAD_KEY, BASE, GOOD_KEY, SshSandbox, keypair, sandbox_argv,
                         write_policy)
from tap import main, run, test

SANDBOX_UID = 1500
# The server's per-peer limit (kSshMaxFailuresPerPeer).
MAX_FAILURES_PER_PEER = 10

POLICY = write_policy("\n".join([
    "version: 1", "filesystem_policy:", "  include_workdir: false",
    "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]",
    "  read_write: [/tmp, /dev/null]",
    "process:", f'  run_as_user: "{SANDBOX_UID}"', f'  run_as_group: "{SANDBOX_UID}"',
    "network_policies: {}"]) + "\n")


@test
def ssh_tcp_listener_on_an_ephemeral_port_serves_exec():
    with Lab(), SshSandbox(POLICY, "tcp:127.0.0.1:0") as box:
        assert box.port and box.port != 0, box.address
        result = box.ssh("id -u")
        assert result.returncode == 0, result.stderr + box.log_text()[-3000:]
        assert result.stdout.strip() == str(SANDBOX_UID), result.stdout


@test
def ssh_host_key_file_is_the_key_clients_see():
    host_key = keypair(f"host-{time.monotonic_ns()}")
    listed = subprocess.run(["ssh-keygen", "-lf", host_key + ".pub"], capture_output=True,
                            text=True, check=True).stdout.split()
    with Lab(), SshSandbox(POLICY, "tcp:127.0.0.1:0", extra=["--ssh-host-key", host_key]) as box:
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
            result = subprocess.run(sandbox_argv(POLICY, "tcp:127.0.0.1:0", "--ssh-host-key", path),
                                    capture_output=True, text=True, timeout=30, cwd=BASE)
            assert result.returncode != 0, (path, result.returncode, result.stderr)
            assert time.monotonic() - started < 20, "the sandbox did not keep running"
            assert path in result.stderr and why in result.stderr, (path, result.stderr)


@test
def ssh_peer_with_too_many_failures_is_closed_at_accept():
    with Lab(), SshSandbox(POLICY, "tcp:127.0.0.1:0") as box:
        def argv(key, source):
            return ["ssh", "-T", *box.client_options(key), "-b", source, box.host, "--", "id -u"]

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
    with Lab(), SshSandbox(POLICY, "tcp:127.0.0.1:0", extra=["--ssh-idle-timeout", "2"]) as box:
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


@test
def ssh_junk_and_dying_clients_leave_the_server_serving():
    import socket
    with Lab(), SshSandbox(POLICY, "tcp:127.0.0.1:0") as box:
        for payload in (os.urandom(4096), b"SSH-2.0-junk\r\n" + os.urandom(2048),
                        b"GET / HTTP/1.1\r\n\r\n", b"SSH-2.0-" + b"x" * 70000 + b"\r\n", b""):
            started = time.monotonic()
            with socket.create_connection((box.host, box.port), timeout=5) as junk:
                junk.sendall(payload)
                junk.shutdown(socket.SHUT_WR)
                junk.settimeout(10)
                try:
                    while junk.recv(4096):
                        pass
                except ConnectionResetError:
                    pass  # a reset is a fine answer to junk
            # Closed at once, not after the 30 s authentication timeout.
            assert time.monotonic() - started < 5, (payload[:20], time.monotonic() - started)
        # A client killed in the middle of a session takes only its own session with it.
        dying = subprocess.Popen(["ssh", "-T", *box.client_options(), box.host, "--",
                                  "sleep 30"], stdin=subprocess.DEVNULL)
        time.sleep(1.0)
        dying.kill()
        dying.wait()
        result = box.ssh("echo still-serving")
        assert result.returncode == 0 and result.stdout == "still-serving\n", \
            (result.returncode, result.stderr, box.log_text()[-3000:])
        assert any("key exchange" in m for m in box.messages()), box.log_text()[-3000:]
        assert box.process.poll() is None


@test
def ssh_a_refused_key_before_the_right_one_is_no_strike():
    # Like an agent offering several keys: each connection is refused one key, then gets in.
    with Lab(), SshSandbox(POLICY, "tcp:127.0.0.1:0") as box:
        argv = ["ssh", "-T", *box.client_options(BAD_KEY), "-i", GOOD_KEY, box.host, "--", "id -u"]
        clients = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for _ in range(MAX_FAILURES_PER_PEER + 2)]
        for client in clients:
            out, err = client.communicate(timeout=60)
            assert client.returncode == 0 and out.strip() == str(SANDBOX_UID), \
                (client.returncode, out, err, box.log_text()[-2000:])
        assert sum("public key refused" in m for m in box.messages()) == len(clients)
        assert not any("failed to authenticate" in m for m in box.messages())


if __name__ == "__main__":
    main()
