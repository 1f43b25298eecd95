"""`openshell sandbox` lifecycle (issue 7): nothing is left behind after 100 sandboxes (processes,
namespaces, mounts, trust directories, sockets), including sandboxes whose command leaves
background daemons and sandboxes killed from outside; a long-lived sandbox's fd count stays flat
under ~200 proxied connections; a rootless sandbox (as nobody) reaches an allowed origin and gets
403 elsewhere; exit codes and signals pass through.

Every test runs inside a fresh network namespace holding only `lo` (proxy_fixture.Lab); origins
listen on 127.0.0.2, which the proxy dials with --allow-loopback-upstream. Leaks are attributed to
this test, since other suites may run beside it: the test process is a child subreaper, so
anything a sandbox leaves running is re-parented to it and counted; host-wide totals are printed
as TAP comments only. Every wait and every subprocess is bounded.
"""
import atexit
import ctypes
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from proxy_fixture import AS_NOBODY, Lab, rootless_binary
from tap import BIN, main, test

PY = "/usr/bin/python3"  # Debian's: a python3 earlier on PATH may be unreadable to the sandbox
CURL = "/usr/bin/curl"
ORIGIN_IP = "127.0.0.2"
DENIED_IP = "127.0.0.3"
SANDBOX_UID = 1500
NOBODY = AS_NOBODY
NS_KINDS = ("net", "mnt", "pid", "user", "ipc", "uts")
# Where `openshell sandbox` writes the CA bundle it hands the child (sandbox.cpp's template).
TRUST_DIR = re.compile(r"^/var/tmp/openshell-sandbox-[A-Za-z0-9]{6}$")
# Mount points a sandbox's mount namespace replaces: one of them on the host would be a leak.
SANDBOX_MOUNTS = {"/tmp", "/run", "/var/run", "/proc", "/dev", "/sys"}

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

# The sandbox's cwd and policies live outside /tmp, which the sandbox replaces with its own.
BASE = tempfile.mkdtemp(prefix="openshell-lifecycle-test-", dir="/var/tmp")
os.chmod(BASE, 0o755)
atexit.register(shutil.rmtree, BASE, True)


ROOTLESS_BIN = rootless_binary(BASE)


def policy(endpoints, run_as=str(SANDBOX_UID)):
    """Fixed filesystem rules; `endpoints` [(host, port)] open to every binary under /usr/bin."""
    lines = ["version: 1", "filesystem_policy:", "  include_workdir: false",
             "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]",
             "  read_write: [/tmp, /dev/null]"]
    if run_as is not None:
        lines += ["process:", f'  run_as_user: "{run_as}"', f'  run_as_group: "{run_as}"']
    if endpoints:
        lines += ["network_policies:", "  local:", "    endpoints:"]
        lines += [f'      - {{host: "{host}", port: {port}}}' for host, port in endpoints]
        lines += ["    binaries:", '      - {path: "/usr/bin/*"}']
    else:
        lines += ["network_policies: {}"]
    path = os.path.join(BASE, f"policy-{random.randrange(10**9)}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def sandbox_argv(policy_path, cmd, args=(), rootless=False):
    prefix = NOBODY if rootless else []
    binary = ROOTLESS_BIN if rootless else BIN
    return [*prefix, binary, "sandbox", "--log-format", "json", "--allow-loopback-upstream",
            "--policy", policy_path, *args, "--", *cmd]


def sandbox(policy_path, cmd, args=(), rootless=False, timeout=60):
    return subprocess.run(sandbox_argv(policy_path, cmd, args, rootless), capture_output=True,
                          text=True, errors="replace", timeout=timeout, cwd=BASE,
                          stdin=subprocess.DEVNULL)


class Running:
    """A sandbox in the background: stdout read line by line with a deadline, stderr (the JSON
    log, which may outgrow a pipe) in a file."""

    def __init__(self, policy_path, cmd, args=(), stdin=subprocess.DEVNULL):
        self.log = tempfile.TemporaryFile(dir=BASE)
        self.process = subprocess.Popen(sandbox_argv(policy_path, cmd, args), stdin=stdin,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        errors="replace", cwd=BASE)
        self.pid = self.process.pid
        self.lines = []
        self.arrived = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            with self.arrived:
                self.lines.append(line)
                self.arrived.notify_all()
        with self.arrived:
            self.lines.append(None)  # end of output
            self.arrived.notify_all()

    def readline(self, timeout=20.0):
        with self.arrived:
            if not self.arrived.wait_for(lambda: self.lines, timeout):
                raise AssertionError(f"no output within {timeout} s; log:\n{self.stderr()}")
            line = self.lines.pop(0)
        assert line is not None, f"output ended; exit {self.process.poll()}; log:\n{self.stderr()}"
        return line

    def send(self, line):
        self.process.stdin.write(line)
        self.process.stdin.flush()

    def signal(self, number):
        self.process.send_signal(number)

    def wait(self, timeout=15.0):
        if self.process.stdin:
            self.process.stdin.close()
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
        self.wait()
        self.log.close()
        return False


def check(result, code=0):
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr[-4000:]}")
    for marker in ("Sanitizer", "runtime error:", "terminate called"):
        assert marker not in result.stderr, result.stderr[-4000:]


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def note(message):
    print(f"# {message}", flush=True)


# ------------------------------------------------------------------------------------------------
# What the host holds


def host_pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants():
    """Pids below this test process (orphans of a sandbox come back here: subreaper)."""
    children = {}
    for pid in host_pids():
        children.setdefault(parent_of(pid), []).append(pid)
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def sleeps(marker):
    """Pids of `sleep MARKER` (not of the openshell or sh whose arguments mention it)."""
    return [pid for pid in host_pids() if cmdline(pid) == f"sleep {marker}"]


def namespaces():
    """{"net:[inode]": {pid, ...}} for every namespace a process on the host is in."""
    held = {}
    for pid in host_pids():
        for kind in NS_KINDS:
            try:
                held.setdefault(os.readlink(f"/proc/{pid}/ns/{kind}"), set()).add(pid)
            except OSError:
                pass
    return held


def mounts():
    """(mount point, source, filesystem type) of every mount in the host's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        out = set()
        for line in f:
            fields, _, rest = line.partition(" - ")
            out.add((fields.split()[4], rest.split()[1], rest.split()[0]))
        return out


def trust_dirs():
    return {path for path in glob.glob("/var/tmp/openshell-sandbox-*") if TRUST_DIR.match(path)}


def lab_sockets():
    """Unix sockets and TCP sockets (not TIME_WAIT) in this thread's network namespace (the lab)."""
    with open("/proc/thread-self/net/unix") as f:
        unix = len(f.readlines()) - 1
    tcp = 0
    for name in ("tcp", "tcp6"):
        with open(f"/proc/thread-self/net/{name}") as f:
            tcp += sum(1 for line in f.readlines()[1:] if line.split()[3] != "06")
    return unix, tcp


class Snapshot:
    def __init__(self):
        self.pids = set(host_pids())
        self.namespaces = namespaces()
        self.mounts = mounts()
        self.trust_dirs = trust_dirs()
        self.sockets = lab_sockets()
        self.base = set(os.listdir(BASE))
        self.tmp = set(os.listdir("/tmp"))


def reap_orphans():
    """Reaps zombies re-parented to this subreaper; only while no Popen of ours is running."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


# ------------------------------------------------------------------------------------------------
# Tests


def unique_sleep():
    """A `sleep` argument no other process on the host has: 100.<random>, ~100 s."""
    return f"100.{random.randrange(10**8):08d}"


def bin_true_runs(policy_path, count, workers=2):
    """`count` sandboxes running /bin/true, `workers` at a time; returns the seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(lambda _: sandbox(policy_path, ["/bin/true"]), range(count)):
            check(result)
    return time.monotonic() - started


def daemon_runs(policy_path, count):
    """Commands that exit 0 leaving two background sleeps: the pid namespace takes them along."""
    for _ in range(count):
        marker = unique_sleep()
        check(sandbox(policy_path, ["/bin/sh", "-c", f"sleep {marker} & sleep {marker} & exit 0"]))
        wait_until(lambda: not sleeps(marker), what=f"the daemons' end ({marker})")


def killed_runs(policy_path, number, expected, given, args=(), count=2):
    """Sandboxes killed from outside mid-run; adds the trust dirs their children got to `given`."""
    for _ in range(count):
        marker = unique_sleep()
        command = ["/bin/sh", "-c", f"sleep {marker} & exec sleep {marker}"]
        with Running(policy_path, command, args) as run:
            found = wait_until(lambda: len(sleeps(marker)) == 2 and sleeps(marker),
                               what="the sandboxed sleeps")
            with open(f"/proc/{found[0]}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            given.add(os.path.dirname(env[b"SSL_CERT_FILE"].decode()))
            run.signal(number)
            code = run.wait()
            assert code == expected, (number, code, run.stderr())
        wait_until(lambda: not sleeps(marker), what=f"the sleeps' end ({marker})")


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True  # gone


def no_live_descendants(reaped):
    """True once nothing runs below the test; reaps the orphans that ended meanwhile."""
    reaped.extend(reap_orphans())
    return not [pid for pid in descendants() if not is_zombie(pid)]


@test
def a_hundred_sandboxes_leave_no_process_namespace_mount_dir_or_socket_behind():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        path = policy([(ORIGIN_IP, origin.port)])
        check(sandbox(path, ["/bin/true"]))  # warm-up: page cache, first-use costs
        assert not descendants(), [(pid, cmdline(pid)) for pid in descendants()]
        before = Snapshot()
        window_start = time.time()
        elapsed = bin_true_runs(path, 100)
        note(f"100 sandboxes running /bin/true (2 at a time): {elapsed:.1f} s")
        left = [(pid, cmdline(pid)) for pid in descendants()]
        assert not left, f"after the /bin/true runs: {left}"
        daemon_runs(path, 3)
        terminated = set()
        killed_runs(path, signal.SIGTERM, 128 + signal.SIGTERM, terminated)  # forwarded
        left = [(pid, cmdline(pid)) for pid in descendants()]
        assert not left, f"after the daemon and SIGTERM runs: {left}"
        # SIGKILLed with --control: the stale socket must not stop the next sandbox using it.
        control = os.path.join(lab.dir, "control.sock")
        sigkilled = set()
        atexit.register(lambda: [shutil.rmtree(d, True) for d in sigkilled])
        killed_runs(path, signal.SIGKILL, -signal.SIGKILL, sigkilled,
                    args=["--control", f"unix:{control}"])
        check(sandbox(path, ["/bin/true"], args=["--control", f"unix:{control}"]))
        assert not os.path.exists(control), "the control socket is removed at exit"
        # SIGKILL leaves openshell's helpers (spawner, the sandbox's init) to this subreaper; their
        # PDEATHSIG ends them: reaped here, nothing may keep running.
        reaped = []
        try:
            wait_until(lambda: no_live_descendants(reaped), what="no process left below the test")
        except AssertionError:
            raise AssertionError([(pid, cmdline(pid)) for pid in descendants()])
        note(f"{len(reaped)} helpers of the SIGKILLed sandboxes ended and were reaped")
        after = Snapshot()
        note(f"host processes: {len(before.pids)} before, {len(after.pids)} after")

        # Namespaces: any that appeared meanwhile must be held by someone else's processes.
        new = {ns: pids for ns, pids in after.namespaces.items() if ns not in before.namespaces}
        binaries = (os.path.realpath(BIN), ROOTLESS_BIN, "sleep 100.")
        ours = {ns: [(pid, cmdline(pid)) for pid in pids] for ns, pids in new.items()
                if any(b in cmdline(pid) for pid in pids for b in binaries)}
        assert not ours, ours
        note(f"namespaces in use on the host: {len(before.namespaces)} before, "
             f"{len(after.namespaces)} after ({len(new)} new, none of them ours)")

        # Mounts: nothing a sandbox mounts shows up in the host's mount namespace.
        added = after.mounts - before.mounts
        suspicious = {m for m in added if m[0] in SANDBOX_MOUNTS or "openshell" in m[0]}
        assert not suspicious, suspicious
        note(f"host mounts: {len(before.mounts)} before, {len(after.mounts)} after")

        # Trust directories: removed at every exit but SIGKILL's, after which nothing of ours
        # runs to clean up (the child's bundle must stay on disk while it runs); the next sandbox
        # to start sweeps those whose openshell is gone (the pid is in the name).
        def leftover_dirs():
            fresh = trust_dirs() - before.trust_dirs - sigkilled
            # Another suite's live sandbox may own a fresh one for a moment; a leak stays.
            return {d for d in fresh if os.path.exists(d) and os.stat(d).st_ctime >= window_start}
        deadline = time.monotonic() + 5
        while leftover_dirs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not leftover_dirs(), leftover_dirs()
        kept = sorted(d for d in sigkilled if os.path.exists(d))
        assert not kept, f"left by SIGKILLed sandboxes and not swept by the next one: {kept}"
        note(f"trust dirs of the {len(sigkilled)} SIGKILLed sandboxes swept by the next start")
        for directory in sigkilled:
            shutil.rmtree(directory, ignore_errors=True)

        # Sockets in the lab's network namespace (only our processes live there) and files.
        wait_until(lambda: lab_sockets() == before.sockets, what=(
            f"the lab's sockets (unix, tcp) back to {before.sockets}, now {lab_sockets()}"))
        assert set(os.listdir(BASE)) == before.base, (before.base, os.listdir(BASE))
        new_tmp = {n for n in set(os.listdir("/tmp")) - before.tmp if "openshell-sandbox" in n}
        assert not new_tmp, new_tmp


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


# Inside the sandbox: warm up, say "ready", then on each "go" make N connections through the
# proxy (3 of 4 allowed, 1 of 4 denied; a few by curl) and say "done" with the status counts.
BURST = r"""
import subprocess, sys, urllib.error, urllib.request
allowed, denied, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
def curl(url):
    out = subprocess.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          "--max-time", "10", url], capture_output=True, text=True).stdout
    return int(out or 0)
def burst(count):
    codes = {}
    for i in range(count):
        url = denied if i % 4 == 3 else allowed
        code = curl(url) if i % 20 == 0 else get(url)
        codes[code] = codes.get(code, 0) + 1
    return codes
burst(20)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "go":
        break
    print("done", sorted(burst(n).items()), flush=True)
"""


@test
def a_long_lived_sandbox_keeps_its_fd_count_flat_over_200_proxied_connections():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        other = lab.origin(host=DENIED_IP)
        control = os.path.join(lab.dir, "control.sock")
        path = policy([(ORIGIN_IP, origin.port)])
        allowed = f"http://{ORIGIN_IP}:{origin.port}/ok"
        denied = f"http://{DENIED_IP}:{other.port}/no"
        with Running(path, [PY, "-c", BURST, allowed, denied, "100"],
                     args=["--control", f"unix:{control}"], stdin=subprocess.PIPE) as run:
            assert run.readline() == "ready\n"
            ctl = [BIN, "ctl", "--endpoint", f"unix:{control}", "status"]
            # One round first, so every lazily made thread, pool and cache exists already.
            run.send("go\n")
            assert run.readline().startswith("done")
            assert subprocess.run(ctl, capture_output=True, timeout=30).returncode == 0
            time.sleep(0.5)
            fds_before, threads_before = fd_count(run.pid), thread_count(run.pid)
            started = time.monotonic()
            for _ in range(2):  # 2 x 100 connections, control calls in between
                run.send("go\n")
                line = run.readline(timeout=60)
                assert line == "done [(200, 75), (403, 25)]\n", (line, run.stderr())
                for _ in range(3):
                    status = subprocess.run(ctl, capture_output=True, timeout=30)
                    assert status.returncode == 0, status
            elapsed = time.monotonic() - started
            try:
                wait_until(lambda: fd_count(run.pid) <= fds_before + 1, timeout=5,
                           what="the fd count to settle")
            except AssertionError:
                fds = sorted(os.readlink(f"/proc/{run.pid}/fd/{fd}")
                             for fd in os.listdir(f"/proc/{run.pid}/fd"))
                raise AssertionError(f"fds {fds_before} -> {fd_count(run.pid)}: {fds}")
            fds_after, threads_after = fd_count(run.pid), thread_count(run.pid)
            note(f"200 proxied connections + 6 ctl calls in {elapsed:.1f} s: openshell fds "
                 f"{fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}")
            assert threads_after <= threads_before, (threads_before, threads_after)
            assert origin.request_count() == 15 + 75 + 150, origin.request_count()
            assert other.request_count() == 0
            code = run.wait(timeout=30)
            assert code == 0, (code, run.stderr())
            log = run.stderr()
        for marker in ("Sanitizer", "runtime error:", "terminate called"):
            assert marker not in log, log
        assert not os.path.exists(control), "the control socket is removed at exit"


@test
def rootless_as_nobody_an_allowed_origin_gets_200_and_a_denied_host_403():
    with Lab() as lab:
        origin = lab.origin(host=ORIGIN_IP)
        other = lab.origin(host=DENIED_IP)
        path = policy([(ORIGIN_IP, origin.port)], run_as=None)
        script = "; ".join(
            f"{CURL} -s -o /dev/null -w '%{{http_code}}\\n' --max-time 10 {url}"
            for url in (f"http://{ORIGIN_IP}:{origin.port}/rootless",
                        f"http://{DENIED_IP}:{other.port}/rootless"))
        script += "; id -u"
        before = trust_dirs()
        result = sandbox(path, ["/bin/sh", "-c", script], rootless=True)
        check(result)
        assert result.stdout.split() == ["200", "403", "65534"], result.stdout + result.stderr
        assert origin.request_count() == 1 and other.request_count() == 0
        assert DENIED_IP in result.stderr, "the denial is logged"
        assert trust_dirs() - before == set(), "the rootless sandbox removed its trust dir"


@test
def exit_codes_pass_through_and_sigterm_is_forwarded_to_the_child():
    with Lab():
        path = policy([])
        for cmd, code in ((["/bin/true"], 0),
                          (["/bin/sh", "-c", "exit 3"], 3),
                          (["/bin/sh", "-c", "kill -KILL $$"], 128 + signal.SIGKILL)):
            check(sandbox(path, cmd), code)
        # The child traps TERM and picks its own code: openshell must pass the signal on and
        # then exit with what the child chose, not with 143 of its own.
        trap = "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"
        with Running(path, ["/bin/sh", "-c", trap]) as run:
            assert run.readline() == "ready\n"
            run.signal(signal.SIGTERM)
            code = run.wait()
            assert code == 42, (code, run.stderr())


if __name__ == "__main__":
    main()
