"""`openshell run` end to end: the real binary on the real kernel, as root and, for the rootless
cases, as `nobody` (setpriv), with Debian's /usr/bin/python3 as the probe inside the sandbox.

Covers (issue 6, runtime-checklist adapted to our network design): FS (Landlock read_only,
read_write, outside the lists), SEC (seccomp denials, ordinary programs still run), PRIV (ids,
capabilities, no_new_privs, no way back to root, no core dumps), MNT (host unix sockets under /run
unreachable, private /tmp), FD (only stdio), PID (a setsid double-forked daemon dies with the
sandbox), NET (only lo; a direct connect fails at once; host loopback unreachable; egress through
proxy:unix and proxy:tcp with the PROXY v2 identity header and its HMAC), lifecycle (exit codes,
128+signal, --timeout, forwarded SIGTERM, SIGKILL of the runtime, stdio, PTY), fail-closed
hard_requirement, missing run_as_user, environment, nothing left behind (mounts, processes).

Every subprocess is bounded by a timeout; only loopback, 192.0.2.1 (TEST-NET-1, inside a namespace
that holds only lo) and unix sockets are ever contacted.
"""
import atexit
import hashlib
import hmac
import os
import platform
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from tap import BIN, main, test

PY = "/usr/bin/python3"  # Debian's: a python3 earlier on PATH may be unreadable to the sandbox
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SANDBOX_UID = 1500

BASE = tempfile.mkdtemp(prefix="openshell-run-", dir="/var/tmp")
os.chmod(BASE, 0o755)
atexit.register(shutil.rmtree, BASE, True)


def make_dir(name, mode=0o777):
    path = os.path.join(BASE, name)
    os.mkdir(path)
    os.chmod(path, mode)
    return path


RO = make_dir("ro")        # world-writable, so only Landlock stops a write
RW = make_dir("rw")
OUTSIDE = make_dir("out")  # in neither list
for directory in (RO, OUTSIDE):
    with open(os.path.join(directory, "f"), "w") as f:
        f.write("content\n")
    os.chmod(os.path.join(directory, "f"), 0o666)


def rootless_binary():
    """The binary as nobody can run it: the build tree may sit under a 0700 home."""
    check = subprocess.run([*NOBODY, "test", "-x", BIN], timeout=10)
    if check.returncode == 0:
        return BIN
    copy = os.path.join(make_dir("bin", 0o755), "openshell")
    shutil.copy2(BIN, copy)
    os.chmod(copy, 0o755)
    return copy


ROOTLESS_BIN = rootless_binary()


def write_policy(name, read_only=(), read_write=(), hard=False, user=str(SANDBOX_UID),
                 include_workdir=False):
    ro = ["/usr", "/lib", "/etc", "/proc", "/dev/urandom", *read_only]
    rw = ["/tmp", "/dev/null", *read_write]
    lines = ["version: 1", "filesystem_policy:", f"  include_workdir: {str(include_workdir).lower()}",
             f"  read_only: [{', '.join(ro)}]", f"  read_write: [{', '.join(rw)}]",
             "landlock:", f"  compatibility: {'hard_requirement' if hard else 'best_effort'}"]
    if user is not None:
        lines += ["process:", f'  run_as_user: "{user}"', f'  run_as_group: "{user}"']
    path = os.path.join(BASE, name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


POLICY = write_policy("main", read_only=[RO], read_write=[RW])


def run(*args, cmd, rootless=False, input=None, timeout=30, env=None):
    """`openshell run ARGS -- CMD`, as root or (rootless) as nobody."""
    prefix = NOBODY if rootless else []
    binary = ROOTLESS_BIN if rootless else BIN
    # cwd: the command starts where openshell does, which nobody must be able to enter.
    return subprocess.run([*prefix, binary, "run", "--log-format", "text", *args, "--", *cmd],
                          input=input, capture_output=True, text=True, errors="replace",
                          timeout=timeout, env=env, cwd=BASE)


def probe(code, *args, **kw):
    return run(*args, cmd=[PY, "-c", code], **kw)


def lines_of(result):
    assert result.returncode == 0, result
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def unique(tag):
    return f"{tag}{random.randrange(10**8)}"


def host_pids_with(marker):
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------------------
# Probes run inside the sandbox (python3 -c); each prints NAME=RESULT lines.

ERRNO_PRELUDE = r"""
import ctypes, errno, os, platform, socket
libc = ctypes.CDLL(None, use_errno=True)
def outcome(call):
    try:
        call()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def checked(result):
    if result < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return result
"""

FS_PROBE = ERRNO_PRELUDE + f"""
def write(path):
    with open(path, "w") as f:
        f.write("x")
print("ro_write=" + outcome(lambda: write("{RO}/new")))
print("ro_read=" + outcome(lambda: open("{RO}/f").read()))
print("rw_write=" + outcome(lambda: write("{RW}/new")))
print("rw_read=" + outcome(lambda: open("{RW}/new").read()))
print("out_read=" + outcome(lambda: open("{OUTSIDE}/f").read()))
print("out_list=" + outcome(lambda: os.listdir("{OUTSIDE}")))
print("out_write=" + outcome(lambda: write("{OUTSIDE}/new")))
print("etc_write=" + outcome(lambda: write("/etc/openshell-probe")))
print("root_list=" + outcome(lambda: os.listdir("/")))
"""

BPF_NR = {"x86_64": 321, "aarch64": 280}
SEC_PROBE = ERRNO_PRELUDE + f"""
BPF = {BPF_NR!r}[platform.machine()]
print("af_packet=" + outcome(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)))
print("raw_socket=" + outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)))
print("ptrace=" + outcome(lambda: checked(libc.ptrace(0, 0, None, None))))
print("bpf=" + outcome(lambda: checked(libc.syscall(BPF, 0, None, 0))))
print("mount=" + outcome(lambda: checked(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))))
print("unshare_user=" + outcome(lambda: checked(libc.unshare(0x10000000))))
print("memfd_create=" + outcome(lambda: os.memfd_create("x")))
print("unix_socket=" + outcome(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)))
print("fork=" + outcome(lambda: checked(os.system("true"))))
"""

PRIV_PROBE = ERRNO_PRELUDE + """
import resource
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print("ids=%d:%d:%s" % (os.getuid(), os.getgid(), ",".join(map(str, sorted(os.getgroups())))))
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    print("%s=%s" % (key, status[key].strip()))
print("setuid0=" + outcome(lambda: os.setuid(0)))
print("setgid0=" + outcome(lambda: os.setgid(0)))
print("core=%d,%d" % resource.getrlimit(resource.RLIMIT_CORE))
print("pid=%d" % os.getpid())
"""

FD_PROBE = """
import os
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("fds=" + ",".join(str(fd) for fd in range(0, 4096) if is_open(fd)))
"""

NET_PROBE = ERRNO_PRELUDE + """
import sys, time
names = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:])
print("interfaces=" + ",".join(names))
if names != ["lo"]:
    sys.exit(3)  # never try a connection from a namespace that could reach somewhere
def connect(address):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(address)
    finally:
        s.close()
start = time.monotonic()
print("testnet=" + outcome(lambda: connect(("192.0.2.1", 80))))
print("testnet_seconds=%.3f" % (time.monotonic() - start))
def connect6(address):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(address)
    finally:
        s.close()
print("testnet6=" + outcome(lambda: connect6(("2001:db8::1", 80))))
print("host_loopback=" + outcome(lambda: connect(("127.0.0.1", int(sys.argv[1])))))
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print("own_loopback=" + outcome(lambda: connect(server.getsockname())))
"""


def net_probe(port, *args, **kw):
    return run(*args, cmd=[PY, "-c", NET_PROBE, str(port)], **kw)


# ------------------------------------------------------------------------------------------------
# FS


@test
def fs_read_only_denies_writes_read_write_works_and_outside_is_denied():
    result = lines_of(probe(FS_PROBE, "--policy", POLICY))
    assert result["ro_write"] == "EACCES", result
    assert result["ro_read"] == "OK", result
    assert result["rw_write"] == "OK" and result["rw_read"] == "OK", result
    assert result["out_read"] == "EACCES" and result["out_list"] == "EACCES", result
    assert result["out_write"] == "EACCES", result
    assert result["etc_write"] == "EACCES", result
    assert result["root_list"] == "EACCES", result
    assert os.stat(os.path.join(RW, "new")).st_uid == SANDBOX_UID
    os.unlink(os.path.join(RW, "new"))


@test
def fs_rootless_applies_the_same_landlock_rules():
    result = lines_of(probe(FS_PROBE, "--policy", POLICY, rootless=True))
    assert result["ro_write"] == "EACCES" and result["out_read"] == "EACCES", result
    assert result["rw_write"] == "OK", result
    os.unlink(os.path.join(RW, "new"))


@test
def fs_include_workdir_grants_the_workdir_read_write():
    workdir = make_dir(unique("work"))
    with_workdir = write_policy(unique("wd"), include_workdir=True)
    result = run("--policy", with_workdir, "--workdir", workdir,
                 cmd=["sh", "-c", "pwd; touch ./made && echo made"])
    assert result.returncode == 0 and result.stdout == f"{workdir}\nmade\n", result
    without = write_policy(unique("nowd"), include_workdir=False)
    result = run("--policy", without, "--workdir", workdir, cmd=["sh", "-c", "touch ./other"])
    assert result.returncode == 1 and "Permission denied" in result.stderr, result


# ------------------------------------------------------------------------------------------------
# SEC


def assert_seccomp(result):
    for call in ("af_packet", "raw_socket", "ptrace", "bpf", "mount", "unshare_user", "memfd_create"):
        assert result[call] == "EPERM", (call, result)
    assert result["unix_socket"] == "OK" and result["fork"] == "OK", result


@test
def sec_dangerous_calls_fail_with_eperm_as_root():
    assert_seccomp(lines_of(probe(SEC_PROBE, "--policy", POLICY)))


@test
def sec_dangerous_calls_fail_with_eperm_rootless():
    assert_seccomp(lines_of(probe(SEC_PROBE, "--policy", POLICY, rootless=True)))


@test
def sec_ordinary_programs_still_run():
    for cmd in ([PY, "-c", "print('py ok')"], ["git", "--version"], ["curl", "--version"],
                ["sh", "-c", "true & wait; echo forked"]):
        result = run("--policy", POLICY, cmd=cmd)
        assert result.returncode == 0 and result.stdout, (cmd, result)
    result = run(cmd=["git", "--version"], rootless=True)
    assert result.returncode == 0 and result.stdout.startswith("git version"), result


# ------------------------------------------------------------------------------------------------
# PRIV


@test
def priv_root_caller_drops_to_the_policy_user_with_nothing_left():
    result = lines_of(probe(PRIV_PROBE, "--policy", POLICY))
    # A numeric user gets no supplementary groups: root's are cleared, none are added.
    assert result["ids"] == f"{SANDBOX_UID}:{SANDBOX_UID}:", result
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert result[key] == "0000000000000000", (key, result)
    assert result["NoNewPrivs"] == "1" and result["Seccomp"] == "2", result
    assert result["setuid0"] == "EPERM" and result["setgid0"] == "EPERM", result
    assert result["core"] == "0,0", result


@test
def priv_without_a_process_section_runs_as_nobody_and_user_flag_overrides():
    result = lines_of(probe(PRIV_PROBE))
    assert result["ids"] == "65534:65534:65534", result
    result = lines_of(probe(PRIV_PROBE, "--user", "daemon", "--group", "4321"))
    assert result["ids"].startswith("1:4321:"), result


@test
def priv_rootless_keeps_the_caller_and_warns_about_run_as_user():
    result = probe(PRIV_PROBE, "--policy", POLICY, rootless=True)
    values = lines_of(result)
    assert values["ids"].startswith("65534:65534"), values
    assert values["CapEff"] == "0000000000000000" and values["CapBnd"] == "0000000000000000", values
    assert values["NoNewPrivs"] == "1" and values["setuid0"] in ("EPERM", "EINVAL"), values
    assert "cannot be honoured" in result.stderr, result.stderr


@test
def priv_missing_run_as_user_name_fails_with_125_and_says_how_to_fix_it():
    if subprocess.run(["getent", "passwd", "sandbox"], capture_output=True).returncode == 0:
        return  # the host has a `sandbox` user: nothing to test here
    policy = write_policy(unique("nouser"), user="sandbox")
    marker = os.path.join(RW, unique("ran"))
    result = run("--policy", policy, cmd=["touch", marker])
    assert result.returncode == 125, result
    assert "'sandbox' does not exist" in result.stderr and "numeric id" in result.stderr, result
    assert not os.path.exists(marker)


@test
def priv_root_is_refused_as_a_sandbox_identity():
    result = run("--user", "0", cmd=["true"])
    assert result.returncode == 125 and "root" in result.stderr, result


# ------------------------------------------------------------------------------------------------
# MNT, FD, PID


def unix_server_under_run():
    directory = tempfile.mkdtemp(prefix="openshell-test-", dir="/run")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(1)
    return directory, path, server


MNT_PROBE = ERRNO_PRELUDE + """
import sys
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    finally:
        s.close()
print("run_socket=" + outcome(lambda: connect(sys.argv[1])))
print("run_listing=" + ",".join(os.listdir("/run")))
print("host_tmp_marker=" + str(os.path.exists(sys.argv[2])))
open(sys.argv[3], "w").write("inside")
print("tmp_write=OK")
"""


def check_mounts(rootless):
    directory, path, server = unix_server_under_run()
    host_marker = f"/tmp/{unique('openshell-host-')}"
    inside_file = f"/tmp/{unique('openshell-inside-')}"
    open(host_marker, "w").close()
    policy = write_policy(unique("mnt"), read_only=["/run"])
    try:
        # Sanity: the host itself reaches the socket, so the sandbox's failure means something.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
        result = lines_of(run("--policy", policy, rootless=rootless,
                              cmd=[PY, "-c", MNT_PROBE, path, host_marker, inside_file]))
        assert result["run_socket"] == "ENOENT", result
        assert result["run_listing"] == "", result
        assert result["host_tmp_marker"] == "False", result
        assert result["tmp_write"] == "OK" and not os.path.exists(inside_file), result
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)
        os.unlink(host_marker)


@test
def mnt_host_run_sockets_are_unreachable_and_tmp_is_private():
    check_mounts(rootless=False)


@test
def mnt_rootless_masks_run_and_tmp_too():
    check_mounts(rootless=True)


def host_mounts():
    """(mount point, filesystem type) of every mount the host sees."""
    with open("/proc/self/mountinfo") as f:
        return {(line.split()[4], line.split(" - ")[1].split()[0]) for line in f}


@test
def mnt_nothing_is_left_mounted_on_the_host():
    # Only what a sandbox mounts counts: other suites may add mounts (netns) meanwhile.
    ours = {"/tmp", "/run", "/var/run", "/proc"}
    before = host_mounts()
    assert run(cmd=["true"]).returncode == 0
    assert run(cmd=["true"], rootless=True).returncode == 0
    sandbox = run("--timeout", "1", cmd=["sleep", "10"])  # ended by SIGTERM, then checked
    assert sandbox.returncode == 124, sandbox
    added = {mount for mount in host_mounts() - before if mount[0] in ours}
    assert not added, added


@test
def fd_the_child_sees_only_stdio():
    for rootless in (False, True):
        result = lines_of(probe(FD_PROBE, rootless=rootless))
        assert result["fds"] == "0,1,2", (rootless, result)


@test
def pid_the_command_is_pid_2_and_a_setsid_daemon_dies_with_the_sandbox():
    for rootless in (False, True):
        marker = f"{random.randrange(1000, 9999)}.{random.randrange(10**6)}"
        # The daemon double-forks into its own session and would outlive a plain parent.
        script = f"(setsid sleep {marker} &) ; echo pid=$$; sleep 3"
        process = subprocess.Popen([*(NOBODY if rootless else []),
                                    ROOTLESS_BIN if rootless else BIN, "run", "--", "sh", "-c",
                                    script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=BASE)
        try:
            wait_until(lambda: host_pids_with(f"sleep\0{marker}"), what="the daemon on the host")
            out, err = process.communicate(timeout=15)
            assert process.returncode == 0 and "pid=2\n" in out, (out, err)
            wait_until(lambda: not host_pids_with(f"sleep\0{marker}"), what="the daemon's end")
        finally:
            process.kill()
            process.wait(timeout=10)


# ------------------------------------------------------------------------------------------------
# NET


class HostListener:
    """A TCP listener on the host's loopback; the sandbox must not reach it."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return self

    def __exit__(self, *exc):
        self.sock.close()

    @property
    def port(self):
        return self.sock.getsockname()[1]


def assert_network_isolated(result):
    values = lines_of(result)
    assert values["interfaces"] == "lo", values
    assert values["testnet"] == "ENETUNREACH" and float(values["testnet_seconds"]) < 1.0, values
    assert values["testnet6"] in ("ENETUNREACH", "EAFNOSUPPORT", "EADDRNOTAVAIL"), values
    assert values["host_loopback"] == "ECONNREFUSED", values
    assert values["own_loopback"] == "OK", values
    # The bypass monitor saw the attempt to leave, named the executable and let it fail; loopback
    # connects (own and host) are the namespace's business and raise no finding.
    findings = [line for line in result.stderr.splitlines() if "BYPASS_DETECT" in line]
    assert any("BYPASS_DETECT 192.0.2.1:80 proto=tcp binary=/usr/bin/python3" in line
               and "call=connect" in line for line in findings), result.stderr
    assert not any("127.0.0.1" in line for line in findings), findings


@test
def net_only_lo_direct_connects_fail_at_once_and_host_loopback_is_unreachable():
    with HostListener() as listener:
        assert_network_isolated(net_probe(listener.port, "--policy", POLICY))
        assert_network_isolated(net_probe(listener.port, rootless=True))


@test
def net_host_needs_an_explicit_flag_and_warns():
    result = run("--network", "host", cmd=["true"])
    assert result.returncode == 2 and "--allow-host-network" in result.stderr, result
    with HostListener() as listener:
        code = (f"import socket; socket.create_connection(('127.0.0.1', {listener.port}), 5); "
                "print('reached')")
        result = run("--network", "host", "--allow-host-network", cmd=[PY, "-c", code])
        assert result.returncode == 0 and result.stdout == "reached\n", result
        assert "shares the host's network" in result.stderr, result


class ProxyV2Receiver:
    """Stands in for a remote proxy: reads the PROXY v2 header and one HTTP request, answers 200."""

    def __init__(self, family, key=None):
        self.key = key
        self.headers = []
        self.requests = []
        if family == "unix":
            self.path = os.path.join(make_dir(unique("proxysock"), 0o755), "proxy.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(self.path)
            os.chmod(self.path, 0o777)
            self.network = f"proxy:unix:{self.path}"
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.network = f"proxy:tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def close(self):
        self.sock.close()

    @staticmethod
    def read_exact(conn, count):
        data = b""
        while len(data) < count:
            chunk = conn.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    fixed = self.read_exact(conn, 16)
                    rest = self.read_exact(conn, struct.unpack("!H", fixed[14:16])[0])
                    self.headers.append(fixed + rest)
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    self.requests.append(request)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
                                 b"relayed!\n")
                except (OSError, EOFError):
                    pass

    @staticmethod
    def tlvs(header):
        family = header[13]
        offset = 16 + {0x11: 12, 0x21: 36}.get(family, 0)
        found = {}
        while offset + 3 <= len(header):
            kind, length = header[offset], struct.unpack("!H", header[offset + 1:offset + 3])[0]
            found[kind] = (offset + 3, header[offset + 3:offset + 3 + length])
            offset += 3 + length
        return found


def check_proxy_egress(receiver, *extra):
    result = run("--network", receiver.network, *extra,
                 cmd=["curl", "-sS", "--max-time", "10", "http://example.test/path"])
    assert result.returncode == 0 and result.stdout == "relayed!\n", result
    assert len(receiver.headers) == 1, receiver.headers
    header = receiver.headers[0]
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n" and header[12] == 0x21, header[:16]
    assert receiver.requests[0].startswith(b"GET http://example.test/path HTTP/1.1\r\n"), receiver.requests
    tlvs = ProxyV2Receiver.tlvs(header)
    assert tlvs[0xE1][1] == b"/usr/bin/curl", tlvs
    with open("/usr/bin/curl", "rb") as f:
        assert tlvs[0xE2][1] == hashlib.sha256(f.read()).digest(), tlvs
    assert struct.unpack("!I", tlvs[0xE0][1])[0] > 1, tlvs  # a host pid, not the sandbox's init
    return header, tlvs


@test
def net_proxy_unix_relays_http_with_the_callers_identity():
    receiver = ProxyV2Receiver("unix")
    try:
        check_proxy_egress(receiver)
    finally:
        receiver.close()


@test
def net_proxy_tcp_header_carries_a_valid_hmac_from_the_identity_key():
    key_file = os.path.join(BASE, unique("key"))
    key = os.urandom(32).hex().encode()
    with open(key_file, "wb") as f:
        f.write(key + b"\n")  # the trailing newline is not part of the key
    receiver = ProxyV2Receiver("tcp")
    try:
        header, tlvs = check_proxy_egress(receiver, "--identity-key-file", key_file)
        start, mac = tlvs[0xE4]
        zeroed = header[:start] + bytes(len(mac)) + header[start + len(mac):]
        assert hmac.compare_digest(mac, hmac.new(key, zeroed, hashlib.sha256).digest())
    finally:
        receiver.close()


class Origin:
    """An HTTP origin on the host's loopback that answers every GET with 200 "origin"."""

    def __init__(self):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"origin\n")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start_proxy(policy_text, key_file):
    """`openshell proxy` on a free loopback port, checking identities with `key_file`."""
    policy = os.path.join(BASE, unique("proxy-policy") + ".yaml")
    with open(policy, "w") as f:
        f.write(policy_text)
    process = subprocess.Popen([BIN, "proxy", "--listen", "127.0.0.1:0", "--policy", policy,
                                "--allow-loopback-upstream", "--identity-key-file", key_file,
                                "--log-format", "json"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "proxy listening on " in line:
            address = line.split("proxy listening on ")[1].split('"')[0]
            return process, int(address.rsplit(":", 1)[1])
    process.kill()
    raise AssertionError("openshell proxy did not start")


@test
def net_proxy_end_to_end_the_real_proxy_decides_by_the_sandboxed_binary():
    origin = Origin()
    key_file = os.path.join(BASE, unique("key"))
    with open(key_file, "w") as f:
        f.write(os.urandom(24).hex() + "\n")
    policy = ("version: 1\nnetwork_policies:\n  local:\n    endpoints:\n"
              f"      - {{host: 127.0.0.1, port: {origin.port}}}\n"
              "    binaries:\n      - {path: /usr/bin/curl}\n")
    proxy, port = start_proxy(policy, key_file)
    network = ["--network", f"proxy:tcp://127.0.0.1:{port}", "--identity-key-file", key_file]
    url = f"http://127.0.0.1:{origin.port}/"
    try:
        # NO_PROXY lists 127.0.0.1 (the sandbox's own loopback): both clients go to the proxy
        # for this URL explicitly.
        for rootless in (False, True):
            allowed = run(*network, cmd=["curl", "-sS", "--noproxy", "", "--max-time", "10", url],
                          rootless=rootless)
            assert allowed.returncode == 0 and allowed.stdout == "origin\n", (rootless, allowed)
        code = ("import http.client\n"
                "proxy = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n"
                "proxy.request('GET', %r)\n"
                "print(proxy.getresponse().status)\n" % url)
        denied = run(*network, cmd=[PY, "-c", code])
        assert denied.returncode == 0 and denied.stdout == "403\n", denied
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
        origin.close()


# ------------------------------------------------------------------------------------------------
# Lifecycle


@test
def life_exit_codes_and_signals_become_run_exit_codes():
    assert run(cmd=["sh", "-c", "exit 42"]).returncode == 42
    assert run(cmd=["sh", "-c", "kill -KILL $$"]).returncode == 137
    assert run(cmd=["sh", "-c", "kill -TERM $$"]).returncode == 143
    assert run(cmd=["sh", "-c", "exit 7"], rootless=True).returncode == 7
    missing = run(cmd=["/nonexistent/program"])
    assert missing.returncode == 127 and "no such file" in missing.stderr, missing
    not_found = run(cmd=["no-such-command-anywhere"])
    assert not_found.returncode == 127 and "not found" in not_found.stderr, not_found
    denied = run(cmd=["/etc/hostname"])
    assert denied.returncode == 126 and "execve" in denied.stderr, denied


@test
def life_stdio_is_passed_through_and_stdout_is_the_childs_alone():
    result = run(cmd=["sh", "-c", "cat; echo out; echo err >&2"], input="from stdin\n")
    assert result.returncode == 0 and result.stdout == "from stdin\nout\n", result
    assert result.stderr == "err\n", result  # no log line at the default level


@test
def life_timeout_exits_124_and_kills_the_whole_group():
    marker = f"{random.randrange(1000, 9999)}.{random.randrange(10**6)}"
    start = time.monotonic()
    result = run("--timeout", "1", cmd=["sh", "-c", f"sleep {marker} & sleep {marker}"])
    assert result.returncode == 124, result
    assert time.monotonic() - start < 5, "took too long"
    wait_until(lambda: not host_pids_with(f"sleep\0{marker}"), what="the sleeps' end")


@test
def life_sigterm_and_sigint_are_forwarded_to_the_child():
    for signal_number, expected in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        # A child that reports the signal it got and exits with 128+N itself.
        # os.write and os._exit: the signal may land while print('ready') still holds stdout.
        code = ("import os, signal, time\n"
                "def got(n, f):\n    os.write(1, b'got %d\\n' % n); os._exit(128 + n)\n"
                "signal.signal(signal.SIGTERM, got); signal.signal(signal.SIGINT, got)\n"
                "print('ready', flush=True)\ntime.sleep(30)\n")
        process = subprocess.Popen([BIN, "run", "--", PY, "-c", code], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout.readline() == "ready\n"
            process.send_signal(signal_number)
            out, err = process.communicate(timeout=15)
            assert process.returncode == expected, (process.returncode, out, err)
            assert out == f"got {int(signal_number)}\n", out
        finally:
            process.kill()
            process.wait(timeout=10)


@test
def life_sigkill_of_the_runtime_leaves_nothing_running():
    marker = f"{random.randrange(1000, 9999)}.{random.randrange(10**6)}"
    process = subprocess.Popen([BIN, "run", "--", "sh", "-c", f"sleep {marker}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: host_pids_with(f"sleep\0{marker}"), what="the sandboxed sleep")
        process.kill()
        process.wait(timeout=10)
        wait_until(lambda: not host_pids_with(f"sleep\0{marker}"), what="the sandbox's end")
    finally:
        process.kill()
        process.wait(timeout=10)


@test
def life_pty_when_asked_with_window_size_and_exit_code():
    inner = "tty; stty size; test -t 0 && test -t 1 && echo both; exit 5"
    command = f"stty cols 91 rows 33; {BIN} run -- sh -c '{inner}'"
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 5, result
    assert "/dev/pts/" in result.stdout and "33 91" in result.stdout, result
    assert "both" in result.stdout, result
    # SIGWINCH: the caller's terminal changes size, the sandbox's PTY follows.
    resize = (f"stty cols 91 rows 33; {BIN} run -- sh -c 'stty size; sleep 1.5; stty size' "
              "</dev/tty & p=$!; sleep 0.7; stty cols 100 rows 40 </dev/tty; kill -WINCH $p; "
              "wait $p")
    result = subprocess.run(["script", "-qec", resize, "/dev/null"], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result
    sizes = result.stdout.replace("^@", "").split()  # script(1) types a NUL: echoed as ^@
    assert "91" in sizes and sizes[sizes.index("91") + 1:sizes.index("91") + 3] == ["40", "100"], result
    forced = run("--tty", cmd=["sh", "-c", "stty size; ps -o pid=,pgid=,sid= -p $$"],
                 input="")
    assert forced.returncode == 0, forced
    size, ids = forced.stdout.splitlines()[:2]
    assert size.strip() == "24 80" and ids.split() == ["2", "2", "2"], forced.stdout


# ------------------------------------------------------------------------------------------------
# Fail closed, environment


@test
def landlock_hard_requirement_fails_closed_when_the_abi_lacks_a_right():
    hard = write_policy(unique("hard"), read_write=[RW], hard=True)
    marker = os.path.join(RW, unique("ran"))
    env = dict(os.environ, OPENSHELL_LANDLOCK_MAX_ABI="1")
    result = run("--policy", hard, cmd=["touch", marker], env=env)
    assert result.returncode == 125, result
    assert "Landlock" in result.stderr and "hard_requirement" in result.stderr, result
    assert not os.path.exists(marker)
    # best_effort with the same cap runs, and says what it lost.
    soft = write_policy(unique("soft"), read_write=[RW])
    result = run("--policy", soft, cmd=["touch", marker], env=env)
    assert result.returncode == 0 and "REFER" in result.stderr, result
    os.unlink(marker)


@test
def env_is_an_allowlist_plus_our_variables():
    env = dict(os.environ, OPENSHELL_SECRET_TOKEN="leak", AWS_SECRET_ACCESS_KEY="leak", TZ="UTC",
               LC_ALL="C")
    result = run("--env", "EXTRA=1", "--env", "OPENSHELL_SANDBOX=0", cmd=["env"], env=env)
    assert result.returncode == 0, result
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert "leak" not in result.stdout, result.stdout
    assert values["OPENSHELL_SANDBOX"] == "1" and values["EXTRA"] == "1", values
    assert values["TZ"] == "UTC" and values["LC_ALL"] == "C" and values["USER"] == "nobody", values
    assert "HTTP_PROXY" not in values and "SSL_CERT_FILE" not in values, values


@test
def env_proxy_and_ca_variables_point_at_the_listener_and_the_bundle():
    receiver = ProxyV2Receiver("unix")
    bundle = os.path.join(BASE, "ca-bundle.pem")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", bundle)
    os.chmod(bundle, 0o644)
    try:
        result = run("--network", receiver.network, "--ca-bundle", bundle,
                     cmd=["sh", "-c", "env; head -c 27 \"$SSL_CERT_FILE\"; echo"])
        assert result.returncode == 0, result
        values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                    "grpc_proxy"):
            assert values[key] == "http://127.0.0.1:3128", (key, values)
        assert values["NO_PROXY"] == values["no_proxy"] == "127.0.0.1,localhost,::1", values
        for key in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO",
                    "NODE_EXTRA_CA_CERTS"):
            assert values[key] == bundle, (key, values)
        assert "-----BEGIN CERTIFICATE-----" in result.stdout, result.stdout
    finally:
        receiver.close()


@test
def cli_usage_errors_exit_2():
    for args in (["run"], ["run", "--network", "bogus", "--", "true"],
                 ["run", "--env", "NOEQUALS", "--", "true"],
                 ["run", "--tty", "--no-tty", "--", "true"]):
        result = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=10)
        assert result.returncode == 2, (args, result)


if __name__ == "__main__":
    main()
