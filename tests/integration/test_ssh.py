"""`openshell sandbox --ssh`: OpenSSH's client against the embedded server on its unix socket
(ProxyCommand socat), keys generated here. A session runs inside the running sandbox as the
sandbox user, its egress goes through the same proxy, a key not in authorized_keys is refused.

Every test runs inside a fresh network namespace holding only `lo` (proxy_fixture.Lab).
"""
import os
import subprocess
import time

from proxy_fixture import Lab
from ssh_fixture import AUTHORIZED, BAD_KEY, BASE, SshSandbox as SshFixture, write_policy
from tap import BIN, main, test

CURL = "/usr/bin/curl"
ORIGIN_IP = "127.0.0.2"
SANDBOX_UID = 1500
NOBODY = 65534


def policy(network, uid=SANDBOX_UID):
    """A policy with `network` ({key: (endpoints, binaries)}) run as `uid` (as test_sandbox.py's;
    importing that module would register its tests here too)."""
    lines = ["version: 1", "filesystem_policy:", "  include_workdir: false",
             "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]",
             "  read_write: [/tmp, /dev/null]",
             "process:", f'  run_as_user: "{uid}"', f'  run_as_group: "{uid}"',
             "network_policies:"]
    for key, (endpoints, binaries) in network.items():
        lines += [f"  {key}:", "    endpoints:"]
        lines += [f"      - {{host: \"{host}\", port: {port}}}" for host, port in endpoints]
        lines += ["    binaries:"] + [f"      - {{path: \"{b}\"}}" for b in binaries]
    if not network:
        lines[-1] = "network_policies: {}"
    return "\n".join(lines) + "\n"


def SshSandbox(policy_text, extra=(), **kwargs):
    """The shared fixture on a unix socket; the proxy may reach this test's loopback origins."""
    return SshFixture(write_policy(policy_text), extra=["--allow-loopback-upstream", *extra],
                      **kwargs)


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
def ssh_stdin_and_stdout_stream_both_ways_at_once():
    # More than the channel windows in both directions at the same time: neither side may wait
    # for the other (flow control, not buffering, keeps memory bounded).
    data = os.urandom(16 * 1024 * 1024)
    with Lab(), SshSandbox(policy({})) as box:
        argv = ["ssh", "-T", *box.client_options(), "sandbox", "--", "cat"]
        result = subprocess.run(argv, input=data, capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout) == len(data) and result.stdout == data


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


def sandbox_sha256(box, path):
    result = box.ssh(f"sha256sum {path}")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def file_sha256(path):
    return subprocess.run(["sha256sum", path], capture_output=True, text=True,
                          check=True).stdout.split()[0]


@test
def scp_and_sftp_copy_files_in_and_out_under_the_sandbox_rules():
    local = os.path.join(BASE, f"payload-{time.monotonic_ns()}")
    with open(local, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))  # more than one window
    # sftp-server looks its user up: the sandbox user needs a passwd entry (nobody has one).
    with Lab(), SshSandbox(policy({}, uid=NOBODY)) as box:
        scp = ["scp", *box.client_options()]
        copied = subprocess.run([*scp, local, "sandbox:/tmp/in.bin"], capture_output=True,
                                text=True, timeout=60)
        assert copied.returncode == 0, copied.stderr + box.log_text()[-3000:]
        assert sandbox_sha256(box, "/tmp/in.bin") == file_sha256(local)
        owner = box.ssh("stat -c %u /tmp/in.bin").stdout.strip()
        assert owner == str(NOBODY), owner  # sftp-server ran as the sandbox user

        back = local + ".back"
        copied = subprocess.run([*scp, "sandbox:/tmp/in.bin", back], capture_output=True,
                                text=True, timeout=60)
        assert copied.returncode == 0, copied.stderr
        assert file_sha256(back) == file_sha256(local)

        # Landlock holds for the SFTP server too: /etc is read-only in the policy.
        refused = subprocess.run([*scp, local, "sandbox:/etc/openshell-scp-test"],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and not os.path.exists("/etc/openshell-scp-test")

        batch = os.path.join(BASE, f"batch-{time.monotonic_ns()}")
        with open(batch, "w") as f:
            f.write("ls /tmp\nrm /tmp/in.bin\n")
        sftp = subprocess.run(["sftp", *box.client_options(), "-b", batch, "sandbox"],
                              capture_output=True, text=True, timeout=60)
        assert sftp.returncode == 0, sftp.stderr
        assert "in.bin" in sftp.stdout, sftp.stdout
        assert box.ssh("test -e /tmp/in.bin && echo present || echo gone").stdout == "gone\n"


def wait_for_port(port, deadline=15.0):
    import socket
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def curl_status(url):
    result = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                             "10", "--noproxy", "*", url], capture_output=True, text=True)
    return result.stdout


@test
def ssh_local_forward_reaches_the_sandbox_loopback_only():
    with Lab() as lab:
        host_origin = lab.origin(host="127.0.0.1")
        # The main process serves on the sandbox's own 127.0.0.1:8000.
        server = ("/usr/bin/python3", "-m", "http.server", "8000", "--bind", "127.0.0.1",
                  "--directory", "/usr/share")
        with SshSandbox(policy({}), command=server) as box:
            assert box.ssh("for i in $(seq 50); do python3 -c 'import socket; "
                           "socket.create_connection((\"127.0.0.1\", 8000))' 2>/dev/null "
                           "&& exit 0; sleep 0.1; done; exit 1").returncode == 0
            forward = subprocess.Popen(
                ["ssh", "-N", *box.client_options(), "-o", "ExitOnForwardFailure=yes",
                 "-L", "127.0.0.1:18000:127.0.0.1:8000",
                 "-L", f"127.0.0.1:18001:127.0.0.1:{host_origin.port}",
                 "-L", "127.0.0.1:18002:localhost:8000",
                 "-L", "127.0.0.1:18003:[::1]:8000",
                 "-L", "127.0.0.1:18004:10.0.0.1:80", "sandbox"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                assert wait_for_port(18000), forward.stderr
                assert curl_status("http://127.0.0.1:18000/") == "200"
                assert curl_status("http://127.0.0.1:18002/") == "200"  # localhost
                # The host's own loopback is not the sandbox's: nothing answers there.
                assert curl_status("http://127.0.0.1:18001/") == "000"
                assert host_origin.request_count() == 0
                # ::1 inside the sandbox: the server listens on 127.0.0.1 only: refused, but
                # the destination itself was allowed (logged as a connect failure, not refused).
                assert curl_status("http://127.0.0.1:18003/") == "000"
                assert curl_status("http://127.0.0.1:18004/") == "000"
                log = box.log_text()
                assert "forward to 10.0.0.1:80 refused: only the sandbox's loopback" in log, \
                    log[-3000:]
                assert "forwarding to 127.0.0.1:8000 in the sandbox" in log
            finally:
                forward.terminate()
                forward.wait(timeout=10)


@test
def ssh_env_requests_pass_the_allowlist_only():
    with Lab(), SshSandbox(policy({})) as box:
        result = box.ssh("echo ${LC_OPENSHELL_TEST:-unset} ${LD_PRELOAD:-unset} "
                         "${HTTPS_PROXY:-unset}",
                         options=["SetEnv=LC_OPENSHELL_TEST=kept", "SetEnv=LD_PRELOAD=/tmp/evil.so",
                                  "SetEnv=HTTPS_PROXY=http://127.0.0.9:1"])
        assert result.returncode == 0, result.stderr
        words = result.stdout.split()
        assert words[:2] == ["kept", "unset"], result.stdout
        assert words[2] != "http://127.0.0.9:1", "a client cannot move the session's proxy"


@test
def ssh_sessions_see_credential_placeholders_set_after_start():
    env = dict(os.environ, OPENSHELL_TEST_SECRET="s3cret-value")
    control = os.path.join(BASE, f"ctl-{time.monotonic_ns()}", "control.sock")
    with Lab(), SshSandbox(policy({}), extra=["--credential", "FIRST=OPENSHELL_TEST_SECRET",
                                              "--control", "unix:" + control],
                           env=env) as box:
        result = box.ssh("echo $FIRST; echo ${LATER:-unset}")
        assert result.stdout.split() == ["openshell:resolve:env:FIRST", "unset"], result.stdout
        pushed = subprocess.run([BIN, "ctl", "--endpoint", "unix:" + control, "set-credentials",
                                 "LATER=another-secret"], capture_output=True, text=True,
                                timeout=30)
        assert pushed.returncode == 0, pushed.stderr
        result = box.ssh("echo ${LATER:-unset}; env | grep -c -e s3cret-value -e another-secret")
        assert result.stdout.split()[0] == "openshell:resolve:env:LATER", result.stdout
        assert result.stdout.split()[1] == "0", "no secret reaches a session"


def read_until(stream, needle, deadline=15.0):
    """Reads `stream` (a binary pipe) until `needle` appears; returns what was read."""
    import select
    seen = b""
    until = time.monotonic() + deadline
    while needle not in seen and time.monotonic() < until:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen


@test
def ssh_attaches_to_the_main_process_and_detaches_with_ctrl_p_ctrl_q():
    main_script = ('while read line; do [ "$line" = quit ] && exit 5; '
                   'echo "got $line"; done')
    with Lab(), SshSandbox(policy({}), command=("/bin/sh", "-c", main_script),
                           extra=["--tty"], stdin=subprocess.PIPE) as box:
        def attach():
            return subprocess.Popen(["ssh", "-T", *box.client_options(), "-s", "sandbox",
                                     "openshell-main"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = attach()
        first.stdin.write(b"hello\n")
        first.stdin.flush()
        assert b"got hello" in read_until(first.stdout, b"got hello"), box.log_text()[-3000:]
        # Ctrl-P Ctrl-Q split across two writes: the client leaves, the main process stays.
        first.stdin.write(b"\x10")
        first.stdin.flush()
        time.sleep(0.2)
        first.stdin.write(b"\x11ignored\n")
        first.stdin.flush()
        assert first.wait(timeout=15) == 0
        assert box.process.poll() is None, "the main process outlives a detach"
        assert "detached from the main process" in box.log_text()

        second = attach()
        # The retained output is replayed first; then the session is live.
        assert b"got hello" in read_until(second.stdout, b"got hello")
        second.stdin.write(b"again\n")
        second.stdin.flush()
        assert b"got again" in read_until(second.stdout, b"got again")
        assert b"ignored" not in read_until(second.stdout, b"ignored", deadline=0.5)
        second.stdin.write(b"quit\n")
        second.stdin.flush()
        code = second.wait(timeout=15)
        assert code == 5, (code, second.stderr.read(), box.log_text()[-2500:])
        assert box.process.wait(timeout=15) == 5


@test
def ssh_attach_without_a_main_terminal_explains_why():
    with Lab(), SshSandbox(policy({})) as box:
        result = subprocess.run(["ssh", "-T", *box.client_options(), "-s", "sandbox",
                                 "openshell-main"], capture_output=True, text=True, timeout=30,
                                input="")
        assert result.returncode == 1, (result.returncode, result.stderr)
        assert "no terminal" in result.stderr, result.stderr


@test
def ssh_pty_follows_the_client_terminal_size():
    import fcntl
    import struct
    import termios

    def set_size(fd, rows, columns):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    with Lab(), SshSandbox(policy({})) as box:
        master, slave = os.openpty()
        set_size(slave, 30, 90)

        def controlling_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        client = subprocess.Popen(
            ["ssh", "-t", *box.client_options(), "sandbox", "--",
             "stty size; echo ready; read x; stty size; echo done"],
            stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
        os.close(slave)
        try:
            reader = os.fdopen(master, "rb", buffering=0)
            seen = read_until(reader, b"ready")
            assert b"30 90" in seen, seen
            set_size(master, 40, 100)  # the kernel sends ssh SIGWINCH: a window-change request
            time.sleep(0.5)
            os.write(master, b"\n")
            seen = read_until(reader, b"done")
            assert b"40 100" in seen, seen
            assert client.wait(timeout=15) == 0
        finally:
            if client.poll() is None:
                client.kill()


@test
def ssh_session_attempts_to_leave_the_sandbox_are_reported():
    # The Lab's namespace holds only `lo`: TEST-NET-2 is unreachable whatever the session does.
    outside = "198.51.100.7"
    with Lab(), SshSandbox(policy({})) as box:
        result = box.ssh(f"{CURL} -sS --noproxy '*' --max-time 10 http://{outside}:8080/; "
                         "echo outside=$?")
        assert result.stdout.split()[-1] == "outside=7", result.stdout + result.stderr
        deadline = time.monotonic() + 5
        while "BYPASS_DETECT" not in box.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        findings = [line for line in box.log_text().splitlines() if "BYPASS_DETECT" in line]
        assert len(findings) == 1, box.log_text()[-3000:]
        assert f"BYPASS_DETECT {outside}:8080 proto=tcp binary={CURL}" in findings[0], findings
        # The monitor went with the session: the next one is watched by a fresh one.
        result = box.ssh(f"{CURL} -sS --noproxy '*' --max-time 10 http://{outside}:9090/; "
                         "echo outside=$?")
        assert result.stdout.split()[-1] == "outside=7"
        deadline = time.monotonic() + 5
        while f"{outside}:9090" not in box.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"BYPASS_DETECT {outside}:9090" in box.log_text()


@test
def rootless_sandbox_serves_ssh_and_forwards_to_its_loopback():
    # openshell itself runs as nobody: its sessions join a user namespace it made, and -L's
    # connect is made by the spawner's helper inside that namespace (no thread of an unprivileged
    # process may join it).
    server = ("/usr/bin/python3", "-m", "http.server", "8000", "--bind", "127.0.0.1",
              "--directory", "/usr/share")
    with Lab(), SshSandbox(policy({}, uid=NOBODY), command=server, rootless=True) as box:
        result = box.ssh("id -u; readlink /proc/self/ns/user")
        assert result.returncode == 0, result.stderr + box.log_text()[-3000:]
        uid, userns = result.stdout.split()
        assert uid == str(NOBODY) and userns != os.readlink("/proc/self/ns/user"), result.stdout
        forward = subprocess.Popen(
            ["ssh", "-N", *box.client_options(), "-o", "ExitOnForwardFailure=yes",
             "-L", "127.0.0.1:18010:127.0.0.1:8000", "sandbox"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_for_port(18010), forward.stderr
            deadline = time.monotonic() + 15
            while curl_status("http://127.0.0.1:18010/") != "200":
                assert time.monotonic() < deadline, box.log_text()[-3000:]
                time.sleep(0.2)  # the server in the sandbox may still be starting
        finally:
            forward.terminate()
            forward.wait(timeout=10)


if __name__ == "__main__":
    main()
