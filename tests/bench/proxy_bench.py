#!/usr/bin/env python3
"""Side-by-side egress proxy benchmark: openshell proxy, tinyproxy, squid and direct, in one run.

Usage: tests/bench/proxy_bench.py [BUILD_DIR]   (default build/release; builds nothing itself)

Starts its own origin, tinyproxy, squid and openshell on free loopback ports with configs in a
temp dir, runs (a) CONNECT + 1 KiB request/response latency, (b) one-tunnel bulk throughput and
(c) idle / 1,000-idle-tunnel RSS, prints markdown tables, and stops every process it started.
"""

import argparse
import json
import os
import pwd
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Targets from the issue. "MB" of the RSS target is read as MiB.
TARGET_LATENCY_RATIO = 0.5  # openshell added p50 <= 0.5x tinyproxy's and squid's
TARGET_THROUGHPUT_FRACTION = 0.90  # tunnel throughput >= 90% of direct
TARGET_KIB_PER_TUNNEL = 40.0
TARGET_IDLE_RSS_KIB = 8 * 1024

# Generous bounds so a wedged peer fails the run instead of hanging it.
START_TIMEOUT_S = 15.0
EXTRA_RUN_TIMEOUT_S = 60.0
SETTLE_S = 1.0  # let a proxy finish allocating before RSS is read


class BenchError(Exception):
    pass


def log(msg):
    print(f"[proxy_bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tree_rss_kib(root_pid):
    """VmRSS summed over a process and its descendants (covers forking proxies)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def tree_cpu_s(root_pid):
    """User + system CPU seconds of a process, its reaped children and its live descendants."""
    total, todo, seen = 0, [root_pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        todo.extend(int(c) for c in children)
    return total / os.sysconf("SC_CLK_TCK")


class LineReader:
    """Reads JSON lines from a child's stdout with a timeout (select on the raw fd)."""

    def __init__(self, proc):
        self.proc, self.buf = proc, b""

    def json_line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no output from {self.proc.args[:2]} within {timeout:.0f} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise BenchError(f"{self.proc.args[:2]} exited (rc {self.proc.wait()})")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


class Processes:
    """Every child this script starts; stop_all() ends them by pid, whatever happened."""

    def __init__(self):
        self.procs = []

    def start(self, name, args, log_path, **kw):
        out = open(log_path, "ab")
        kw.setdefault("stdout", out)
        proc = subprocess.Popen(args, stderr=out, start_new_session=True, **kw)
        out.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: helpers included
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def stop_all(self):
        for _, proc in reversed(self.procs):
            self.stop(proc)


def raise_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


class Proxy:
    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc
        self.failed = None  # reason, once the proxy stopped being usable


def wait_listening(name, proc, port, log_path):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}; see {log_path}")
        if port_answers(port):
            return
        time.sleep(0.1)
    raise BenchError(f"{name} did not listen on 127.0.0.1:{port}; see {log_path}")


def chown_for(path, user):
    """Peers started as root drop to an unprivileged user; give it their own directory."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def start_tinyproxy(procs, tmp, origin_ports):
    d = tmp / "tinyproxy"
    d.mkdir()
    port = free_port()
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 600", "MaxClients 4096",
             "Allow 127.0.0.1", "DisableViaHeader Yes", f'LogFile "{d}/tinyproxy.log"',
             "LogLevel Warning", f'PidFile "{d}/tinyproxy.pid"']
    lines += [f"ConnectPort {p}" for p in origin_ports]
    if os.geteuid() == 0:
        lines += ["User nobody", "Group nogroup"]
        chown_for(d, "nobody")
    (d / "tinyproxy.conf").write_text("\n".join(lines) + "\n")
    log_path = d / "stderr.log"
    proc = procs.start("tinyproxy", ["tinyproxy", "-d", "-c", str(d / "tinyproxy.conf")], log_path)
    wait_listening("tinyproxy", proc, port, log_path)
    return Proxy("tinyproxy", port, proc)


def start_squid(procs, tmp, origin_ports):
    d = tmp / "squid"
    d.mkdir()
    port = free_port()
    conf = f"""# Written by proxy_bench.py: only the bench origin, no cache, no DNS.
http_port 127.0.0.1:{port}
workers 1
max_filedescriptors 4096
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log none
cache_store_log none
coredump_dir {d}
cache deny all
acl bench_clients src 127.0.0.1/32
acl bench_ports port {' '.join(str(p) for p in origin_ports)}
http_access deny CONNECT !bench_ports
http_access deny !bench_ports
http_access allow bench_clients
http_access deny all
visible_hostname openshell-bench
dns_nameservers 127.0.0.1
pinger_enable off
shutdown_lifetime 0 seconds
logfile_rotate 0
"""
    (d / "squid.conf").write_text(conf)
    chown_for(d, "proxy")  # Debian's squid runs as user proxy when started as root
    log_path = d / "stderr.log"
    # -N: foreground and no fork, so the pid we hold is the process that serves.
    proc = procs.start("squid", ["squid", "-N", "-f", str(d / "squid.conf")], log_path)
    wait_listening("squid", proc, port, log_path)
    cache_log = (d / "cache.log").read_text(errors="replace")
    if "Accepting HTTP Socket connections" not in cache_log:
        raise BenchError(f"squid answers but cache.log has no 'Accepting HTTP'; see {d}")
    return Proxy("squid", port, proc)


def openshell_missing(binary):
    if not binary.is_file():
        return f"{binary} not found (build it first)"
    probe = subprocess.run([str(binary), "proxy", "--help"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return f"'{binary} proxy --help' exited {probe.returncode}: subcommand not available yet"
    return None


def start_openshell(procs, tmp, origin_ports, binary, extra_args):
    d = tmp / "openshell"
    d.mkdir()
    port = free_port()
    ports = ", ".join(str(p) for p in origin_ports)
    # Standalone proxy has no identity source, so binaries match anything here.
    (d / "policy.yaml").write_text(f"""version: 1
network_policies:
  bench_origin:
    name: bench_origin
    endpoints:
      - host: 127.0.0.1
        ports: [{ports}]
    binaries:
      - path: "**"
""")
    args = [str(binary), "proxy", "--listen", f"127.0.0.1:{port}", "--policy",
            str(d / "policy.yaml"), "--allow-loopback-upstream", *extra_args]
    log_path = d / "output.log"
    proc = procs.start("openshell", args, log_path, stdin=subprocess.DEVNULL)
    wait_listening("openshell", proc, port, log_path)
    return Proxy("openshell", port, proc)


class Runner:
    def __init__(self, load, opts, procs, tmp):
        self.load, self.opts, self.procs, self.tmp = str(load), opts, procs, tmp

    def run(self, mode, *args, timeout):
        cmd = [self.load, mode, *map(str, args)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{' '.join(cmd)} still running after {timeout:.0f} s") from e
        lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise BenchError(f"{' '.join(cmd)}: rc {done.returncode}: {done.stderr.strip()}")
        return json.loads(lines[-1])

    def run_charged(self, proxy, mode, *args, timeout):
        """Runs a client and adds the proxy's CPU seconds spent meanwhile as "proxy_cpu_s"."""
        cpu_before = tree_cpu_s(proxy.proc.pid) if proxy else 0.0
        result = self.run(mode, *args, timeout=timeout)
        result["proxy_cpu_s"] = tree_cpu_s(proxy.proc.pid) - cpu_before if proxy else 0.0
        return result

    def rr(self, mode, label, target, proxy, clients, duration, warmup):
        args = ["--label", label, "--target", target, "--clients", clients,
                "--duration", duration, "--warmup", warmup]
        if proxy:
            args += ["--proxy", f"127.0.0.1:{proxy.port}"]
        return self.run_charged(proxy, mode, *args, timeout=duration + warmup + EXTRA_RUN_TIMEOUT_S)

    def throughput(self, label, target, proxy):
        args = ["--label", label, "--target", target, "--bytes", self.opts.bytes,
                "--timeout", 120]
        if proxy:
            args += ["--proxy", f"127.0.0.1:{proxy.port}"]
        return self.run_charged(proxy, "throughput", *args, timeout=180)

    def idle(self, proxy, target):
        """RSS before, with N idle tunnels, and whether every tunnel still works afterwards."""
        before = tree_rss_kib(proxy.proc.pid)
        cmd = [self.load, "idle", "--label", proxy.name, "--target", target, "--proxy",
               f"127.0.0.1:{proxy.port}", "--tunnels", str(self.opts.tunnels), "--timeout", "30"]
        child = self.procs.start(f"idle-{proxy.name}", cmd, self.tmp / f"idle-{proxy.name}.log",
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            reader = LineReader(child)
            ready = reader.json_line(timeout=120)
            time.sleep(SETTLE_S)
            during = tree_rss_kib(proxy.proc.pid)
            child.stdin.write(b"go\n")
            child.stdin.close()
            done = reader.json_line(timeout=120)
        finally:
            self.procs.stop(child)
        opened = max(ready["open"], 1)
        return {"rss_idle_kib": before, "rss_tunnels_kib": during, "open": ready["open"],
                "alive": done["alive"], "kib_per_tunnel": (during - before) / opened,
                "first_error": ready["first_error"] or done["first_error"]}


def smoke(runner, proxy, target):
    """Four CONNECT round trips; a proxy that fails them is reported, not benchmarked."""
    r = runner.run("connect-rr", "--proxy", f"127.0.0.1:{proxy.port}", "--target", target,
                   "--clients", 2, "--count", 4, "--timeout", 5, timeout=30)
    if r["errors"] or r["requests"] != 4:
        raise BenchError(f"CONNECT smoke test failed: {r['first_error'] or r}")


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt(value, digits=0):
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def build_report(names, res, opts):
    out = []
    ms = lambda us: fmt(us / 1000.0, 2) if us == us else "n/a"
    out.append(f"### openshell proxy benchmark ({opts.clients} clients, {opts.duration:g} s x "
               f"{opts.rounds} round(s); {opts.bytes / 2**30:g} GiB tunnel; "
               f"{opts.tunnels} idle tunnels; {os.cpu_count()} CPUs, load average "
               f"{opts.loadavg:.2f} at start)\n")
    head = ["target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "req/s", "errors",
            "proxy CPU µs/req"]
    if opts.single_client_seconds > 0:
        head.append("added p50 µs @1 client")
    head += ["tunnel MB/s", "% of direct", "proxy CPU s/GiB", "idle RSS MiB",
             f"RSS {opts.tunnels} tunnels MiB", "KiB/tunnel"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        r = res[name]
        if r.get("failed"):
            out.append(f"| {name} | " + " | ".join(["—"] * (len(head) - 2)) +
                       f" | {r['failed']} |")
            continue
        row = [name, ms(r["p50"]), ms(r["p99"]), ms(r.get("added_p50", 0.0)),
               ms(r.get("added_p99", 0.0)), fmt(r["rps"]), str(r["errors"]),
               fmt(r["cpu_us_per_req"]) if name != "direct" else "—"]
        if opts.single_client_seconds > 0:
            row.append(fmt(r.get("added_p50_c1", 0.0)))
        row += [fmt(r["mbps"]), fmt(100.0 * r["fraction"], 1),
                fmt(r["cpu_s_per_gib"], 2) if name != "direct" else "—"]
        idle = r.get("idle")
        if idle:
            row += [fmt(idle["rss_idle_kib"] / 1024, 1), fmt(idle["rss_tunnels_kib"] / 1024, 1),
                    fmt(idle["kib_per_tunnel"], 1) +
                    ("" if idle["alive"] == opts.tunnels else f" ({idle['alive']} alive)")]
        else:
            row += ["—", "—", "—"]
        out.append("| " + " | ".join(row) + " |")

    out.append("\nTargets (the goals are for openshell; peers are shown for scale):\n")
    head = ["proxy", "added p50 / tinyproxy", "added p50 / squid",
            f"latency ≤{TARGET_LATENCY_RATIO}× both",
            f"throughput ≥{TARGET_THROUGHPUT_FRACTION:.0%}",
            f"≤{TARGET_KIB_PER_TUNNEL:g} KiB/tunnel",
            f"idle RSS ≤{TARGET_IDLE_RSS_KIB // 1024} MiB"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        r = res[name]
        if name == "direct" or r.get("failed"):
            continue
        peers = [res[p].get("added_p50") for p in ("tinyproxy", "squid")
                 if p in res and not res[p].get("failed")]
        r_tiny = ratio(r.get("added_p50"), res.get("tinyproxy", {}).get("added_p50"))
        r_squid = ratio(r.get("added_p50"), res.get("squid", {}).get("added_p50"))
        lat_ok = None
        if peers and all(p is not None and p > 0 for p in peers):
            lat_ok = all(r["added_p50"] <= TARGET_LATENCY_RATIO * p for p in peers)
        idle = r.get("idle")
        out.append("| " + " | ".join([
            name, fmt(r_tiny, 2) + "×" if r_tiny is not None else "n/a",
            fmt(r_squid, 2) + "×" if r_squid is not None else "n/a", verdict(lat_ok),
            verdict(r["fraction"] >= TARGET_THROUGHPUT_FRACTION),
            verdict(idle and idle["kib_per_tunnel"] <= TARGET_KIB_PER_TUNNEL and
                    idle["alive"] == opts.tunnels),
            verdict(idle and idle["rss_idle_kib"] <= TARGET_IDLE_RSS_KIB)]) + " |")
    return "\n".join(out)


def benchmark(opts, load, procs, tmp):
    origin_log = tmp / "origin.log"
    origin = procs.start("origin", [str(load), "origin", "--listen", "127.0.0.1:0"], origin_log,
                         stdout=subprocess.PIPE)
    bulk = procs.start("bulk", [str(load), "bulk", "--listen", "127.0.0.1:0"], origin_log,
                       stdout=subprocess.PIPE)
    http_port = LineReader(origin).json_line(timeout=10)["port"]
    bulk_port = LineReader(bulk).json_line(timeout=10)["port"]
    http_target, bulk_target = f"127.0.0.1:{http_port}", f"127.0.0.1:{bulk_port}"
    origin_ports = [http_port, bulk_port]

    proxies, res, notes = [], {}, []
    starters = {
        "tinyproxy": lambda: start_tinyproxy(procs, tmp, origin_ports),
        "squid": lambda: start_squid(procs, tmp, origin_ports),
        "openshell": lambda: start_openshell(procs, tmp, origin_ports, opts.openshell,
                                             opts.openshell_arg),
    }
    runner = Runner(load, opts, procs, tmp)
    for name in ("tinyproxy", "squid", "openshell"):
        if name not in opts.only:
            continue
        missing = (openshell_missing(opts.openshell) if name == "openshell"
                   else None if shutil.which(name) else f"{name} is not installed")
        if missing:
            notes.append(f"{name} skipped: {missing}")
            continue
        try:
            proxy = starters[name]()
            smoke(runner, proxy, http_target)
            proxies.append(proxy)
            log(f"{name} listening on 127.0.0.1:{proxy.port} (CONNECT smoke test ok)")
        except BenchError as e:
            notes.append(f"{name} not benchmarked: {e}")
            res[name] = {"failed": str(e)}
    time.sleep(SETTLE_S)

    def drop(proxy, error):
        notes.append(f"{proxy.name} dropped from the run: {error}")
        res[proxy.name] = {"failed": str(error)}
        proxies.remove(proxy)

    # (c) first, so "idle RSS" is the freshly started process and the tunnel delta is clean.
    for p in list(proxies):
        log(f"idle: {opts.tunnels} tunnels through {p.name}")
        try:
            res[p.name] = {"idle": runner.idle(p, http_target)}
        except BenchError as e:
            drop(p, e)

    # (a) alternating targets within each round, so drift on a noisy host hits all of them.
    rounds = {name: [] for name in ["direct"] + [p.name for p in proxies]}
    singles = {p: [] for p in rounds}
    targets = [("direct", None)] + [(p.name, p) for p in proxies]
    for rnd in range(opts.rounds):
        for name, proxy in targets:
            log(f"latency round {rnd + 1}: {name}, {opts.clients} clients, {opts.duration:g} s")
            rounds[name].append(runner.rr("direct-rr" if proxy is None else "connect-rr", name,
                                          http_target, proxy, opts.clients, opts.duration,
                                          opts.warmup))
        if opts.single_client_seconds > 0:
            for name, proxy in targets:
                singles[name].append(runner.rr(
                    "direct-rr" if proxy is None else "connect-rr", name, http_target, proxy, 1,
                    opts.single_client_seconds, 0.5))

    # (b) repeated and interleaved; the median rate is reported.
    rates = {name: [] for name, _ in targets}
    cpu_per_gib = {name: [] for name, _ in targets}
    for rep in range(opts.repeats):
        for name, proxy in targets:
            log(f"throughput {rep + 1}/{opts.repeats}: {name}")
            r = runner.throughput(name, bulk_target, proxy)
            if r.get("errors"):
                rates[name].append(0.0)
                notes.append(f"throughput via {name} failed: {r.get('first_error')}")
            else:
                rates[name].append(r["mb_per_s"])
                cpu_per_gib[name].append(r["proxy_cpu_s"] / (r["bytes"] / 2**30))

    for name, _ in targets:
        runs = rounds[name]
        r = res.setdefault(name, {})
        r["runs"] = runs
        r["p50"] = median([x["p50_us"] for x in runs])
        r["p99"] = median([x["p99_us"] for x in runs])
        r["rps"] = median([x["rps"] for x in runs])
        # Includes warm-up requests, which the client does not count: a slight overestimate.
        r["cpu_us_per_req"] = median([
            1e6 * x["proxy_cpu_s"] / max(1.0, x["rps"] * (x["seconds"] + opts.warmup))
            for x in runs])
        r["cpu_s_per_gib"] = median(cpu_per_gib[name])
        r["errors"] = sum(x["errors"] for x in runs)
        r["added_p50"] = median([x["p50_us"] - d["p50_us"] for x, d in zip(runs, rounds["direct"])])
        r["added_p99"] = median([x["p99_us"] - d["p99_us"] for x, d in zip(runs, rounds["direct"])])
        if singles[name]:
            r["added_p50_c1"] = median([x["p50_us"] - d["p50_us"]
                                        for x, d in zip(singles[name], singles["direct"])])
        r["mbps"] = median(rates[name])
        r["fraction"] = r["mbps"] / median(rates["direct"])
    for p in proxies:
        if p.proc.poll() is not None:
            notes.append(f"{p.name} exited during the run (rc {p.proc.returncode})")
    names = [n for n in ["direct", "tinyproxy", "squid", "openshell"] if n in res]
    return build_report(names, res, opts), notes, res


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=None,
                    help="meson build dir holding openshell and tests/bench/proxy_load "
                         "(default build/release under the repo root)")
    ap.add_argument("--load", type=Path,
                    help="proxy_load binary (default BUILD/tests/bench/proxy_load)")
    ap.add_argument("--openshell", type=Path,
                    help="openshell binary (default BUILD/openshell, else BUILD/src/cli/openshell)")
    ap.add_argument("--only", default="tinyproxy,squid,openshell",
                    help="comma-separated proxies to run (direct always runs)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per latency run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each run")
    ap.add_argument("--rounds", type=int, default=1, help="latency rounds (median reported)")
    ap.add_argument("--single-client-seconds", type=float, default=3.0,
                    help="extra 1-client latency run per target (0 = skip)")
    ap.add_argument("--bytes", type=int, default=2**30, help="bytes through one tunnel")
    ap.add_argument("--repeats", type=int, default=3, help="throughput repeats (median reported)")
    ap.add_argument("--tunnels", type=int, default=1000)
    ap.add_argument("--openshell-arg", action="append", default=[],
                    help="extra argument for 'openshell proxy' (repeatable)")
    ap.add_argument("--json", type=Path, help="also write raw results here")
    ap.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    opts = ap.parse_args()
    opts.build = Path(opts.build) if opts.build else REPO_ROOT / "build" / "release"
    opts.build = opts.build.resolve()
    opts.load = (opts.load or opts.build / "tests" / "bench" / "proxy_load").resolve()
    if not opts.openshell:
        candidates = [opts.build / "openshell", opts.build / "src" / "cli" / "openshell"]
        opts.openshell = next((c for c in candidates if c.is_file()), candidates[0])
    opts.openshell = opts.openshell.resolve()
    opts.only = set(opts.only.split(","))
    return opts


def main():
    opts = parse_args()
    if not opts.load.is_file():
        sys.exit(f"proxy_bench: {opts.load} not found; build with 'meson compile -C {opts.build}' "
                 "or pass --load")
    # Each idle tunnel costs the client one fd and a proxy two; leave room for the rest.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * opts.tunnels + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * opts.tunnels + 256:
        sys.exit(f"proxy_bench: open-file limit {hard} is too low for {opts.tunnels} tunnels")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, raise_on_signal)

    opts.loadavg = os.getloadavg()[0]  # other work on the host shows up as noise
    tmp = Path(tempfile.mkdtemp(prefix="openshell-bench-"))
    tmp.chmod(0o755)  # squid and tinyproxy drop to their own users and must reach their dirs
    procs = Processes()
    ok = False
    try:
        report, notes, res = benchmark(opts, opts.load, procs, tmp)
        print(report)
        for note in notes:
            print(f"\nNote: {note}")
        if opts.json:
            opts.json.write_text(json.dumps(res, indent=2, default=str))
        ok = True
    except BenchError as e:
        log(f"failed: {e}")
    finally:
        procs.stop_all()
        if opts.keep_tmp or not ok:
            log(f"configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
