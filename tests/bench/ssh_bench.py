#!/usr/bin/env python3
"""SSH server benchmark: `openshell sandbox --ssh` against OpenSSH's sshd, with OpenSSH's client.

Usage: tests/bench/ssh_bench.py [BUILD_DIR]   (default build/release; builds nothing itself)

Runs as root inside a fresh network namespace holding only `lo` (the script re-executes itself
under `unshare -n`), starts both servers on 127.0.0.1 with the same client key, and measures
`ssh host -- true` on a new connection and on an open one (ControlMaster), then scp of a random
file up and down. Rows take turns so noise on the host hits both alike; prints markdown tables
with openshell / sshd ratios.
"""

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import (REPO_ROOT, Row, build_label, find_openshell, fmt, measure, probe, ratio,
                          wait_for_exit)

# Set in the re-executed copy that already runs in its own network namespace.
NETNS_MARK = "OPENSHELL_SSH_BENCH_NETNS"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
# sshd refuses to start without its privilege separation directory (made by systemd normally).
SSHD_PRIVSEP_DIR = Path("/run/sshd")
# Start-up of either server takes well under a second; this long means it is not coming up.
START_TIMEOUT_S = 20.0
# A 64 MiB copy takes about a second here; this long means the transfer is wedged.
COPY_TIMEOUT_S = 120.0
# Run as nobody (as test_ssh.py's scp test): sftp-server looks its user up, nobody has an entry.
SANDBOX_UID = 65534
MIB = 1024 * 1024
# The key exchange both servers are held to by default. OpenSSH 9's client prefers
# sntrup761x25519-sha512, which libssh 0.10 lacks; its key generation alone costs the client
# tens of ms, which would be charged to sshd's connection time.
PINNED_KEX = "curve25519-sha256"


def log(msg):
    print(f"[ssh_bench] {msg}", file=sys.stderr, flush=True)


def raise_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def enter_private_netns():
    """Re-executes this script under `unshare -n` once; inside, brings `lo` up.

    Every server and client then sees only loopback: nothing of the run can leave the host, and
    the ports are private to this run.
    """
    if os.environ.get(NETNS_MARK) != "1":
        env = dict(os.environ, **{NETNS_MARK: "1"})
        os.execvpe("unshare", ["unshare", "-n", "--", sys.executable, *sys.argv], env)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    if len(links) != 1 or ": lo:" not in links[0]:
        raise SystemExit(f"network namespace holds more than lo: {links}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy_text():
    """test_ssh.py's policy(): system read-only, /tmp and /dev/null writable, no network."""
    return "\n".join([
        "version: 1", "filesystem_policy:", "  include_workdir: false",
        "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]",
        "  read_write: [/tmp, /dev/null]",
        "process:", f'  run_as_user: "{SANDBOX_UID}"', f'  run_as_group: "{SANDBOX_UID}"',
        "network_policies: {}"]) + "\n"


def sshd_config(tmp, port):
    return "\n".join([
        "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {tmp / 'sshd_host_ed25519'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "UseDNS no", "PidFile none", "PrintMotd no",
        "PrintLastLog no", f"Subsystem sftp {SFTP_SERVER}", "LogLevel INFO"]) + "\n"


class Server:
    """One SSH server under test: its process, port, log, and where uploads go on its side."""

    def __init__(self, name, argv, log_path, upload_dir):
        self.name, self.log_path, self.upload_dir = name, log_path, upload_dir
        self.port = None
        self.master = None  # the ControlMaster client holding one connection open
        self.mux = None  # its ControlPath
        self.argv_shown = argv
        self.algorithms = ""
        self.log_file = open(log_path, "w")
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                        stderr=self.log_file, cwd="/")

    def log_text(self):
        return Path(self.log_path).read_text(errors="replace")

    def stop(self):
        if self.master and self.master.poll() is None:
            self.master.terminate()
            try:
                self.master.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def bench_passwd(tmp):
    """/etc/passwd with root's home moved to an empty directory and its shell set to bash.

    openshell runs a command as `/bin/bash -c CMD` (sftp-server directly) with no rc file to
    read; sshd runs it with the user's login shell, and Debian's bash reads ~/.bashrc when
    started by sshd. A root's .bashrc that runs pyenv or conda would then be what is measured.
    """
    home = tmp / "sshd-home"
    home.mkdir(mode=0o700)
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == "root":
            fields[5], fields[6] = str(home), "/bin/bash"
        lines.append(":".join(fields))
    path = tmp / "passwd"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def start_sshd(tmp, port, host_passwd):
    SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    config = tmp / "sshd_config"
    config.write_text(sshd_config(tmp, port))
    upload = tmp / "sshd-upload"  # on the same tmpfs as the sandbox's /tmp
    upload.mkdir()
    argv = [SSHD, "-D", "-e", "-f", str(config), "-p", str(port)]
    if not host_passwd:
        argv = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
                'mount --bind "$0" /etc/passwd && exec "$@"', str(bench_passwd(tmp))] + argv
    server = Server("sshd", argv, tmp / "sshd.log", str(upload))
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sshd did not start:\n" + server.log_text()[-2000:])
            time.sleep(0.05)
    server.port = port
    return server


def start_openshell(binary, tmp):
    policy = tmp / "policy.yaml"
    policy.write_text(policy_text())
    argv = [str(binary), "sandbox", "--log-format", "json", "--log-level", "info", "--policy",
            str(policy), "--ssh", "tcp:127.0.0.1:0", "--ssh-authorized-keys",
            str(tmp / "authorized_keys"), "--", "/bin/sleep", "3600"]
    server = Server("openshell", argv, tmp / "openshell.log", "/tmp")
    deadline = time.monotonic() + START_TIMEOUT_S
    while server.port is None:
        for line in server.log_text().splitlines():
            try:
                message = json.loads(line).get("message", "")
            except ValueError:
                continue
            found = re.match(r"ssh: listening on tcp:127\.0\.0\.1:(\d+);", message)
            if found:
                server.port = int(found.group(1))
        if server.port is None:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("openshell's SSH server did not start:\n"
                                   + server.log_text()[-2000:])
            time.sleep(0.05)
    return server


def client_options(key, extra):
    """What every client gets: the one key, no config file, no prompts, any host key."""
    argv = ["-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null"]
    for option in extra:
        argv += ["-o", option]
    return argv


def no_mux():
    return ["-o", "ControlMaster=no", "-o", "ControlPath=none"]


def via_mux(path):
    return ["-o", "ControlMaster=no", "-o", f"ControlPath={path}"]


def ssh_argv(server, opts, mux=None, command=("true",), verbose=False):
    return (["ssh", "-T", *(["-v"] if verbose else []), *client_options(opts.key, opts.ssh_option),
             *(via_mux(mux) if mux else no_mux()), "-p", str(server.port), "root@127.0.0.1",
             "--", *command])


def scp_argv(server, opts, mux, source, dest):
    return ["scp", "-q", *client_options(opts.key, opts.ssh_option), *via_mux(mux), "-P",
            str(server.port), source, dest]


def negotiated(server, opts):
    """The key exchange, host key and cipher the client agreed on with this server."""
    rc, _, err = probe(ssh_argv(server, opts, verbose=True), timeout=30)
    kex = re.search(r"kex: algorithm: (\S+)", err)
    hostkey = re.search(r"kex: host key algorithm: (\S+)", err)
    cipher = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+)", err)
    parts = [f"kex {kex.group(1)}" if kex else "kex ?",
             f"host key {hostkey.group(1)}" if hostkey else "host key ?",
             f"cipher {cipher.group(1)}" + (f" (MAC {cipher.group(2)})" if cipher and
                                            cipher.group(2) != "<implicit>" else "")
             if cipher else "cipher ?"]
    if rc != 0:
        raise RuntimeError(f"{server.name}: `ssh -- true` exited {rc}: {err.strip()[-1500:]}\n"
                           + server.log_text()[-2000:])
    return ", ".join(parts)


def open_master(server, opts, path):
    """A ControlMaster connection that later `ssh`/`scp` runs multiplex their channels over."""
    server.master = subprocess.Popen(
        ["ssh", "-N", *client_options(opts.key, opts.ssh_option), "-o", "ControlMaster=yes",
         "-o", f"ControlPath={path}", "-o", "ControlPersist=no", "-p", str(server.port),
         "root@127.0.0.1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, cwd="/")
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        check = subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={path}", "-O",
                                "check", "root@127.0.0.1"], capture_output=True, cwd="/")
        if check.returncode == 0:
            return
        if server.master.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: control master did not come up: "
                               + server.master.stderr.read().decode(errors="replace")[-1000:])
        time.sleep(0.05)


def tree_cpu_s(root):
    """CPU seconds (user + system, with reaped children's) of `root` and its descendants."""
    parent, times = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        parent[pid] = int(fields[1])
        times[pid] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root]
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0)
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def own_children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_copy(argv):
    start = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd="/")
    rc = wait_for_exit(proc, COPY_TIMEOUT_S)
    elapsed = (time.perf_counter_ns() - start) / 1e9
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return elapsed, rc, err


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def measure_copies(servers, opts, payload, tmp, notes):
    """scp up and down, `--copies` times each, the servers taking turns; per-copy records."""
    results = {s.name: {"upload": [], "download": []} for s in servers}
    expected = sha256(payload)
    for rnd in range(opts.copies):
        shift = rnd % len(servers)
        for server in servers[shift:] + servers[:shift]:
            remote = f"root@127.0.0.1:{server.upload_dir}/ssh_bench-payload.bin"
            back = tmp / f"back-{server.name}.bin"
            for kind, source, dest in (("upload", str(payload), remote),
                                       ("download", remote, str(back))):
                cpu_server = tree_cpu_s(server.process.pid)
                cpu_client = own_children_cpu_s() + tree_cpu_s(server.master.pid)
                seconds, rc, err = timed_copy(scp_argv(server, opts, server.mux, source, dest))
                cpu_server = tree_cpu_s(server.process.pid) - cpu_server
                cpu_client = own_children_cpu_s() + tree_cpu_s(server.master.pid) - cpu_client
                if rc != 0:
                    notes.append(f"{server.name} {kind} failed ({'timeout' if rc is None else rc})"
                                 f": {err.strip()[-500:]}")
                    continue
                results[server.name][kind].append(
                    {"seconds": seconds, "server_cpu_s": cpu_server, "client_cpu_s": cpu_client})
            if rnd == 0 and back.exists() and sha256(back) != expected:
                notes.append(f"{server.name}: the file downloaded differs from the one uploaded")
            back.unlink(missing_ok=True)
    return results


def latency_table(rows):
    head = ["row", "server", "p50 ms", "p95 ms", "mean ms", "p50 openshell / sshd",
            "mean openshell / sshd", "failed"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    stats = {}
    for row in rows:
        stats[(row.what, row.server)] = row.stats()
    for row in rows:
        s = stats[(row.what, row.server)]
        base = stats.get((row.what, "sshd"))
        cells = [row.what, row.server]
        if s is None:
            cells += ["n/a"] * 5
        else:
            cells += [fmt(s["p50"]), fmt(s["p95"]), fmt(s["mean"])]
            if row.server == "sshd" or base is None:
                cells += ["—", "—"]
            else:
                cells += [fmt(ratio(s["p50"], base["p50"])) + "×",
                          fmt(ratio(s["mean"], base["mean"])) + "×"]
        cells.append(str(row.failures) + (f" ({row.first_failure})" if row.failures else ""))
        out.append("| " + " | ".join(cells) + " |")
    return out, {f"{k[0]} / {k[1]}": v for k, v in stats.items()}


def copy_table(results, size_mib):
    head = ["copy", "server", "median MiB/s", "min–max MiB/s", "openshell / sshd",
            "server CPU s/GiB", "client CPU s/GiB", "copies"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary = {}
    for kind in ("upload", "download"):
        for name in results:
            runs = results[name][kind]
            if not runs:
                summary[(kind, name)] = None
                continue
            rates = sorted(size_mib / r["seconds"] for r in runs)
            per_gib = 1024 / size_mib
            summary[(kind, name)] = {
                "median": statistics.median(rates), "min": rates[0], "max": rates[-1],
                "server_cpu": statistics.median(r["server_cpu_s"] for r in runs) * per_gib,
                "client_cpu": statistics.median(r["client_cpu_s"] for r in runs) * per_gib,
                "copies": len(runs)}
        for name in results:
            s, base = summary[(kind, name)], summary.get((kind, "sshd"))
            label = f"scp {kind} ({size_mib:g} MiB)"
            if s is None:
                out.append(f"| {label} | {name} | n/a | n/a | — | n/a | n/a | 0 |")
                continue
            r = ("—" if name == "sshd" or not base
                 else fmt(ratio(s["median"], base["median"])) + "×")
            out.append(f"| {label} | {name} | {fmt(s['median'], 1)} | {fmt(s['min'], 1)}–"
                       f"{fmt(s['max'], 1)} | {r} | {fmt(s['server_cpu'])} | "
                       f"{fmt(s['client_cpu'])} | {s['copies']} |")
    return out, {f"{k[0]} / {k[1]}": v for k, v in summary.items()}


def report(opts, servers, rows, results, notes):
    out = [f"### SSH server ({opts.rounds_done} interleaved rounds of each row after "
           f"{opts.warmup} warm-up runs, {opts.copies} copies each way; {os.cpu_count()} CPUs, "
           f"load average {opts.loadavg:.2f} at start; kernel {os.uname().release}; openshell "
           f"from {build_label(opts.openshell)}; {opts.ssh_version})\n"]
    lat, lat_stats = latency_table(rows)
    out += lat
    out.append("\nWall time of the `ssh` client from fork to exit (stdio on /dev/null). "
               "**new connection**: TCP, key exchange, public-key auth, a session channel running "
               "`true`, exit status, close. **open connection**: the same command multiplexed "
               "over a ControlMaster connection opened beforehand (session channel and command "
               "only).\n")
    cp, cp_stats = copy_table(results, opts.size_mib)
    out += cp
    out.append(f"\nscp (SFTP protocol, OpenSSH 9's default) of a {opts.size_mib:g} MiB random "
               "file from tmpfs to tmpfs (the sandbox's /tmp; /dev/shm for sshd) over the "
               "ControlMaster connection, so no handshake is counted: MiB/s = size / wall time "
               "of `scp`. CPU is user + system time over the copy, per GiB: the server's whole "
               "process tree, and the client side (scp, its ssh and the master, which does the "
               "client's crypto).\n")
    out.append("Servers:\n")
    for server in servers:
        out.append(f"- {server.name}: `{' '.join(server.argv_shown)}`; negotiated: "
                   f"{server.algorithms}")
    out.append(f"\nClient options for both: `{' '.join(client_options('KEY', opts.ssh_option))}`"
               " (ed25519 key), login `root@127.0.0.1`. sshd runs commands as root with "
               + ("root's entry in the host's /etc/passwd (--host-passwd: its ~/.bashrc runs in "
                  "every session)" if opts.host_passwd else
                  "`/bin/bash -c` and an empty home (a private mount namespace binds a copy of "
                  "/etc/passwd), as openshell runs them as uid 65534 in the sandbox") + ".")
    for note in notes:
        out.append(f"\nNote: {note}")
    return "\n".join(out), {"latency": lat_stats, "copies": cp_stats}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=None,
                    help="meson build dir holding src/cli/openshell (default build/release)")
    ap.add_argument("--openshell", type=Path,
                    help="openshell binary (default BUILD/src/cli/openshell, else BUILD/openshell)")
    ap.add_argument("--runs", type=int, default=50, help="recorded `ssh -- true` runs per row")
    ap.add_argument("--warmup", type=int, default=3, help="unrecorded runs of each row first")
    ap.add_argument("--copies", type=int, default=3, help="scp copies each way per server")
    ap.add_argument("--size-mib", type=float, default=64, help="size of the copied file")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 runs, 1 copy of 16 MiB")
    ap.add_argument("--max-seconds", type=float, default=120.0,
                    help="stop the latency rounds after this long, whatever rounds are left")
    ap.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra -o for every client (repeatable), e.g. "
                    "KexAlgorithms=curve25519-sha256 or Ciphers=aes128-gcm@openssh.com")
    ap.add_argument("--default-kex", action="store_true",
                    help=f"let the client pick the key exchange (sshd: sntrup761x25519-sha512, "
                    f"about 90 ms of client CPU here; openshell: {PINNED_KEX}) instead of "
                    f"{PINNED_KEX} for both")
    ap.add_argument("--host-passwd", action="store_true",
                    help="sshd sees the host's /etc/passwd (root's own home and shell, so its "
                    "~/.bashrc runs in every session) instead of an empty home and /bin/bash")
    ap.add_argument("--json", type=Path, help="also write raw results here")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (keys, logs)")
    opts = ap.parse_args()
    if not opts.default_kex and not any(o.lower().startswith("kexalgorithms")
                                        for o in opts.ssh_option):
        opts.ssh_option.insert(0, f"KexAlgorithms={PINNED_KEX}")
    if opts.quick:
        opts.runs, opts.warmup, opts.copies, opts.size_mib = 10, 1, 1, 16
    if opts.runs < 1 or opts.warmup < 0 or opts.copies < 1 or opts.size_mib <= 0:
        ap.error("--runs and --copies must be ≥ 1, --warmup ≥ 0, --size-mib > 0")
    build = Path(opts.build) if opts.build else REPO_ROOT / "build" / "release"
    opts.openshell = opts.openshell.resolve() if opts.openshell else find_openshell(build.resolve())
    return opts


def preflight(opts):
    if os.geteuid() != 0:
        raise SystemExit("ssh_bench: run as root (a network namespace, sshd, and a sandbox that "
                         "drops to nobody)")
    missing = [p for p in ("ssh", "scp", "ssh-keygen", "unshare", "ip") if not shutil.which(p)]
    missing += [p for p in (SSHD, SFTP_SERVER) if not os.access(p, os.X_OK)]
    if missing:
        raise SystemExit(f"ssh_bench: missing {', '.join(missing)} (Debian: openssh-server, "
                         "openssh-client, openssh-sftp-server, util-linux, iproute2)")
    if not opts.openshell.is_file():
        raise SystemExit(f"ssh_bench: {opts.openshell} not found (build it first)")


def main():
    opts = parse_args()
    preflight(opts)
    enter_private_netns()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, raise_on_signal)
    opts.loadavg = os.getloadavg()[0]
    opts.ssh_version = subprocess.run(["ssh", "-V"], capture_output=True,
                                      text=True).stderr.split(",")[0].strip()
    # tmpfs, and outside /tmp, which the sandbox replaces with its own.
    tmp = Path(tempfile.mkdtemp(prefix="ssh_bench-", dir="/dev/shm"))
    os.chmod(tmp, 0o755)
    servers, failed = [], True
    try:
        opts.key = tmp / "client_ed25519"
        for key in (opts.key, tmp / "sshd_host_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True)
        shutil.copy(f"{opts.key}.pub", tmp / "authorized_keys")
        payload = tmp / "payload.bin"
        with open(payload, "wb") as f:
            left = int(opts.size_mib * MIB)
            while left:
                f.write(os.urandom(min(left, MIB)))
                left -= min(left, MIB)

        sshd = start_sshd(tmp, free_port(), opts.host_passwd)
        sshd.argv_shown = [SSHD, "-D", "-e", "-f", "CONFIG", "-p", str(sshd.port)]
        servers.append(sshd)
        shell = start_openshell(opts.openshell, tmp)
        shell.argv_shown = [str(opts.openshell), "sandbox", "--log-format", "json",
                            "--log-level", "info", "--policy", "P", "--ssh", "tcp:127.0.0.1:0",
                            "--ssh-authorized-keys", "K", "--", "/bin/sleep", "3600"]
        servers.append(shell)
        notes = []
        for server in servers:
            server.algorithms = negotiated(server, opts)
            server.mux = tmp / f"mux-{server.name}"
            open_master(server, opts, server.mux)
            rc, out, err = probe(ssh_argv(server, opts, server.mux, ("id", "-u")), timeout=30)
            if rc != 0:
                raise RuntimeError(f"{server.name}: multiplexed `id -u` exited {rc}: {err}")
            log(f"{server.name} on port {server.port}: uid {out.strip()}; {server.algorithms}")

        rows = []
        for what, mux in (("new connection: ssh -- true", False),
                          ("open connection: ssh -- true", True)):
            for server in servers:
                row = Row(f"{what} / {server.name}",
                          ssh_argv(server, opts, server.mux if mux else None))
                row.what, row.server = what, server.name
                rows.append(row)
        log(f"{len(rows)} rows, {opts.runs} rounds after {opts.warmup} warm-up")
        opts.rounds_done = measure(rows, opts.runs, opts.warmup, opts.max_seconds, log)
        log(f"scp: {opts.copies} × {opts.size_mib:g} MiB each way per server")
        results = measure_copies(servers, opts, payload, tmp, notes)
        text, stats = report(opts, servers, rows, results, notes)
        print(text)
        if opts.json:
            opts.json.write_text(json.dumps({
                "stats": stats, "copies": results,
                "runs_ns": {r.name: r.ns for r in rows},
                "algorithms": {s.name: s.algorithms for s in servers}}, indent=2))
        failed = False
        return 0
    finally:
        for server in servers:
            server.stop()
        if failed or opts.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
