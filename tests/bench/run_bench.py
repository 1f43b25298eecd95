#!/usr/bin/env python3
"""Sandbox start-up benchmark: `openshell run` against bwrap, `unshare` and bare /bin/true.

Usage: tests/bench/run_bench.py [BUILD_DIR]   (default build/release; builds nothing itself)

Times, from fork to exit, `/bin/true` run in each sandbox (and alone, as the floor), the rows
taking turns in rounds so noise on the host hits them all alike; prints a markdown table with
p50/p95/mean and ratios against bwrap, and the target line for openshell. With --breakdown N it
also traces N more openshell runs (tracefs) and says which step of the start-up costs what.
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# A sandbox around /bin/true starts in milliseconds; a run this slow is wedged, not slow.
RUN_TIMEOUT_S = 10.0
# The measurement stops here even if rounds are left (the report says how many ran).
DEFAULT_MAX_SECONDS = 900.0
# The unprivileged rows' identity: nobody/nogroup, as setpriv takes them.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# Every row runs from /: the sandbox keeps the caller's cwd, and nobody can traverse /.
RUN_CWD = "/"
TRUE = "/bin/true"
BWRAP = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
UNSHARE = ["unshare", "-U", "-r", "-n"]
TARGET = "openshell run p50 ≤ bwrap p50 (while applying Landlock and seccomp)"

# --breakdown: a tracefs instance of our own (removed at the end) records these events for our
# children only (set_event_pid + event-fork): kernel tracepoints, no uprobes, no perf.
TRACEFS = Path("/sys/kernel/tracing")
TRACE_EVENTS = [
    "sched/sched_process_fork", "sched/sched_process_exec", "sched/sched_process_exit",
    "syscalls/sys_enter_clone", "syscalls/sys_exit_clone", "syscalls/sys_enter_mount",
    "syscalls/sys_enter_landlock_create_ruleset", "syscalls/sys_enter_seccomp",
    "syscalls/sys_enter_sendmsg", "syscalls/sys_enter_execve", "syscalls/sys_enter_exit_group",
    "syscalls/sys_exit_wait4",
]
TRACE_BUFFER_KIB = 16384  # per CPU; about 60 events a run, so thousands of runs fit


class Row:
    def __init__(self, name, args, baseline=None, floor=None):
        self.name, self.args = name, args
        self.baseline = baseline  # the row this one's ratios are taken against
        self.floor = floor  # the /bin/true row of the same identity
        self.ns = []  # wall time of every recorded run
        self.failures = 0
        self.first_failure = None

    def stats(self):
        if not self.ns:
            return None
        ms = sorted(v / 1e6 for v in self.ns)
        p95 = statistics.quantiles(ms, n=100, method="inclusive")[94] if len(ms) > 1 else ms[0]
        return {"runs": len(ms), "p50": statistics.median(ms), "p95": p95,
                "mean": statistics.fmean(ms), "min": ms[0], "max": ms[-1]}


def log(msg):
    print(f"[run_bench] {msg}", file=sys.stderr, flush=True)


def raise_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def probe(args, timeout=RUN_TIMEOUT_S):
    """One run with its output kept: (rc, stdout, stderr); rc None when it timed out."""
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, cwd=RUN_CWD)
    except subprocess.TimeoutExpired:
        return None, "", f"still running after {timeout:.0f} s"
    except OSError as e:
        return 127, "", str(e)
    return done.returncode, done.stdout, done.stderr


def wait_for_exit(proc, timeout):
    """The exit code, or None after killing a run that outlived `timeout`.

    Not Popen.wait(timeout): with a timeout it polls waitpid(WNOHANG) with sleeps of 1, 2, 4,
    8, 16 ms..., which rounds every run up to about 1, 3, 7, 15 or 31 ms. poll(2) on a pidfd
    wakes when the process exits; without pidfds a watchdog thread kills it instead.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fired = threading.Event()

        def kill():
            fired.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            rc = proc.wait()
        finally:
            watchdog.cancel()
        return None if fired.is_set() else rc
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            proc.kill()
            proc.wait()
            return None
        return proc.wait()  # it has exited: waitpid returns at once
    finally:
        os.close(pidfd)


def timed(args):
    """Wall time of one run in ns, from before the fork to after the wait, and its exit code."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=RUN_CWD)
    rc = wait_for_exit(proc, RUN_TIMEOUT_S)
    return time.perf_counter_ns() - start, rc


def build_label(binary):
    """`build/NAME/...` for a binary of this repo, else the path: tells extra builds apart."""
    try:
        rel = binary.relative_to(REPO_ROOT)
    except ValueError:
        return str(binary)
    return "/".join(rel.parts[:2]) if rel.parts[:1] == ("build",) else str(rel)


def status_fields(text):
    return {k: v.strip() for k, v in re.findall(r"^(\w+):\s*(.*)$", text, re.M)}


def check_openshell(binary, prefix):
    """Whether the default policy's layers are on: (ok, what was seen, problem or None).

    The info log says whether the Landlock ruleset was built; the sandboxed shell's own
    /proc/self/status shows the seccomp filter, no_new_privs, the uid and the capability sets.
    """
    show = ("grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' "
            "/proc/self/status")
    rc, out, err = probe(prefix + [str(binary), "run", "--network", "none", "--log-level", "info",
                                   "--log-format", "text", "--", "/bin/sh", "-c", show])
    if rc != 0:
        return False, "", f"probe exited {rc}: {err.strip()[-300:]}"
    fields = status_fields(out)
    landlock = re.search(r"Landlock: ruleset ready[^\n]*", err)
    degraded = re.search(r"[^\n]*(without filesystem restrictions|continuing without it)[^\n]*",
                         err)
    problems = []
    if not landlock or degraded:
        problems.append("Landlock not applied: " + (degraded.group(0) if degraded
                                                    else "no 'ruleset ready' in the log"))
    if fields.get("Seccomp") != "2":
        problems.append(f"Seccomp: {fields.get('Seccomp')} (want 2, filter mode)")
    if fields.get("NoNewPrivs") != "1":
        problems.append(f"NoNewPrivs: {fields.get('NoNewPrivs')}")
    uid = fields.get("Uid", "0").split()[0]
    if os.geteuid() == 0 and not prefix and uid == "0":
        problems.append("still uid 0")
    for cap in ("CapEff", "CapBnd", "CapAmb"):
        if int(fields.get(cap, "1"), 16) != 0:
            problems.append(f"{cap}: {fields.get(cap)}")
    seen = (f"{landlock.group(0) if landlock else 'no Landlock line'}; seccomp mode "
            f"{fields.get('Seccomp')} ({fields.get('Seccomp_filters', '?')} filter), "
            f"NoNewPrivs {fields.get('NoNewPrivs')}, uid {uid}, CapEff/CapBnd/CapAmb "
            f"{fields.get('CapEff')}/{fields.get('CapBnd')}/{fields.get('CapAmb')}")
    return not problems, seen, "; ".join(problems) or None


def openshell_usable(binary):
    """(args for `run`, None) or (None, why the binary cannot be measured)."""
    if not binary.is_file():
        return None, f"{binary} not found (build it first)"
    rc, out, err = probe([str(binary), "run", "--help"])
    if rc != 0:
        return None, f"'{binary} run --help' exited {rc}: subcommand not available yet"
    args = [str(binary), "run", "--network", "none"]
    if "--log-level" in out + err:
        args += ["--log-level", "warn"]  # the default today; said anyway to keep stderr quiet
    return args + ["--", TRUE], None


def make_rows(opts, notes):
    """The rows that can run here; each must exit 0 once, unmeasured, or it is left out."""
    root = os.geteuid() == 0
    floor = Row("/bin/true", [TRUE])
    rows = [floor]
    bwrap = None
    if shutil.which("bwrap"):
        bwrap = Row("bwrap", BWRAP + [TRUE], floor=floor)
        bwrap.baseline = bwrap
        rows.append(bwrap)
    else:
        notes.append("bwrap is not installed: no ratios")
    if shutil.which("unshare"):
        rows.append(Row("unshare -U -r -n", UNSHARE + [TRUE], bwrap, floor))
    else:
        notes.append("unshare is not installed")

    os_args, problem = openshell_usable(opts.openshell)
    if problem:
        notes.append(f"openshell rows skipped: {problem}")
    else:
        rows.append(Row("openshell run", os_args, bwrap, floor))
        if not opts.no_load_row:
            # Loading the binary alone (dynamic linking, static constructors, CLI parsing): the
            # part of the run row that is not sandbox work.
            rows.append(Row("openshell --version (load only)", [str(opts.openshell), "--version"],
                            bwrap, floor))
    for extra in opts.also_openshell:
        args, problem = openshell_usable(extra)
        if problem:
            notes.append(f"extra openshell row skipped: {problem}")
        else:
            rows.append(Row(f"openshell run [{build_label(extra)}]", args, bwrap, floor))

    if root and shutil.which("setpriv") and not opts.no_rootless:
        floor_nb = Row("/bin/true (nobody)", NOBODY + [TRUE])
        rows.append(floor_nb)
        bwrap_nb = None
        if bwrap:
            bwrap_nb = Row("bwrap (nobody)", NOBODY + BWRAP + [TRUE], floor=floor_nb)
            bwrap_nb.baseline = bwrap_nb
            rows.append(bwrap_nb)
        if os_args:
            rows.append(Row("openshell run (nobody)", NOBODY + os_args, bwrap_nb, floor_nb))
    elif root and not opts.no_rootless:
        notes.append("setpriv is not installed: no unprivileged rows")

    opts.checks = {}
    usable = []
    for row in rows:
        rc, _, err = probe(row.args)
        if rc != 0:
            notes.append(f"{row.name} left out: exited {rc}: {err.strip()[-300:]}")
            for other in rows:
                if other.baseline is row:
                    other.baseline = None
                if other.floor is row:
                    other.floor = None
            continue
        if row.name.startswith("openshell run"):
            if err.strip():
                notes.append(f"{row.name} wrote to stderr at --log-level warn: "
                             f"{err.strip()[-300:]}")
            prefix = NOBODY if row.name.endswith("(nobody)") else []
            binary = Path(row.args[len(prefix)])
            ok, seen, problem = check_openshell(binary, prefix)
            opts.checks[row.name] = {"ok": ok, "seen": seen, "problem": problem}
            if not ok:
                notes.append(f"{row.name}: default policy not fully applied: {problem}")
        usable.append(row)
    return usable


def measure(rows, opts):
    for row in rows:
        for _ in range(opts.warmup):
            timed(row.args)
    deadline = time.monotonic() + opts.max_seconds
    opts.rounds_done = 0
    for rnd in range(opts.runs):
        if time.monotonic() > deadline:
            log(f"stopping after {rnd} rounds: --max-seconds {opts.max_seconds:g} reached")
            break
        # Rotate the order each round: no row always runs right after the same neighbour.
        shift = rnd % len(rows)
        for row in rows[shift:] + rows[:shift]:
            ns, rc = timed(row.args)
            if rc == 0:
                row.ns.append(ns)
            else:
                row.failures += 1
                row.first_failure = row.first_failure or (
                    "timeout" if rc is None else f"exit {rc}")
        opts.rounds_done = rnd + 1
        if (rnd + 1) % 50 == 0:
            log(f"{rnd + 1}/{opts.runs} rounds")


# ---- --breakdown: where an openshell run's time goes -------------------------------------------

class Tracer:
    """A tracefs instance that records TRACE_EVENTS for this process's descendants."""

    def __init__(self):
        self.dir = TRACEFS / "instances" / f"openshell_run_bench_{os.getpid()}"

    def write(self, name, value):
        (self.dir / name).write_text(str(value))

    def __enter__(self):
        self.dir.mkdir()
        try:
            self.write("buffer_size_kb", TRACE_BUFFER_KIB)
            self.write("trace_clock", "mono")
            for event in TRACE_EVENTS:
                self.write(f"events/{event}/enable", 1)
            self.write("options/event-fork", 1)
            self.write("set_event_pid", os.getpid())
        except BaseException:
            self.__exit__()
            raise
        return self

    def collect(self, runs):
        self.write("tracing_on", 1)
        for run in runs:
            run()
        self.write("tracing_on", 0)
        return (self.dir / "trace").read_text(errors="replace")

    def __exit__(self, *_):
        try:
            self.write("tracing_on", 0)
        except OSError:
            pass
        try:
            self.dir.rmdir()  # tracefs frees the instance and its buffers
        except OSError as e:
            log(f"could not remove {self.dir}: {e}")


TRACE_LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+):\s+(.*)$")


def parse_trace(text):
    """ftrace lines as (pid, ms, event, detail); syscalls as enter_NAME / exit_NAME."""
    events = []
    for line in text.splitlines():
        m = TRACE_LINE.match(line)
        if not m:
            continue
        pid, ms, rest = int(m.group(2)), float(m.group(3)) * 1000.0, m.group(4)
        if (sx := re.match(r"sys_(\w+) -> (\S+)", rest)):
            events.append((pid, ms, "exit_" + sx.group(1), sx.group(2)))
        elif (se := re.match(r"sys_(\w+)\((.*)\)$", rest)):
            events.append((pid, ms, "enter_" + se.group(1), se.group(2)))
        elif (sc := re.match(r"(sched_process_\w+): (.*)", rest)):
            events.append((pid, ms, sc.group(1), sc.group(2)))
    return events


# Marks in one openshell run, in order: (the step that ends here, in which process, at which
# event: the first one after the previous mark).
# P is openshell, S its spawner, I the sandbox's init (pid 1 inside), M the main process.
BREAKDOWN_MARKS = [
    ("start-up: exec, dynamic loading, static constructors, CLI, user lookup (NSS)",
     "P", "enter_landlock_create_ruleset"),
    ("Landlock ruleset prepared in the caller (best-effort check)", "P", "enter_seccomp"),
    ("seccomp filter compiled (libseccomp) + thread check", "P", "enter_clone"),
    ("fork of the spawner (the caller's whole address space)", "P", "exit_clone"),
    ("signals, child environment, program lookup, spawn request sent", "P", "enter_sendmsg"),
    ("spawner receives the request, builds the plan", "S", "enter_clone"),
    ("clone of the init into new pid/mount/net/ipc/uts namespaces", "I", "exit_clone"),
    ("init: id maps (rootless), signals reset, parent-death signal", "I", "enter_mount"),
    ("init: mounts (/ slave, tmpfs, /proc), lo up, Landlock ruleset", "I", "enter_clone"),
    ("fork of the main process", "M", "exit_clone"),
    ("main: setsid, chdir, privilege drop, Landlock, seccomp, close fds", "M", "enter_execve"),
    ("execve of /bin/true", "M", "sched_process_exec"),
    ("/bin/true runs", "M", "enter_exit_group"),
    ("init reaps it and exits, spawner notices, openshell collects it and exits", "P",
     "sched_process_exit"),
    ("teardown until the caller's wait returns", "W", "exit_wait4"),
]


def breakdown_of(events, binary):
    """Per run, the ms of each step of BREAKDOWN_MARKS; runs that miss a mark are dropped."""
    children = {}
    for pid, _, name, detail in events:
        if name == "sched_process_fork":
            m = re.search(r"child_pid=(\d+)", detail)
            if m:
                children.setdefault(pid, []).append(int(m.group(1)))
    by_pid = {}
    for ev in events:
        by_pid.setdefault(ev[0], []).append(ev)
    parent_of = {c: p for p, cs in children.items() for c in cs}
    runs = []
    for pid, ms, name, detail in events:
        if name != "sched_process_exec" or f"filename={binary} " not in detail + " ":
            continue
        roles = {"P": pid}
        for child, parent in (("S", "P"), ("I", "S"), ("M", "I")):
            kids = children.get(roles.get(parent), [])
            if kids:
                roles[child] = kids[0]
        roles["W"] = parent_of.get(pid)  # the caller (this script), whose wait4 returns P
        t, steps, ok = ms, [], True
        for _label, role, event in BREAKDOWN_MARKS:
            found = None
            for p, when, n, d in by_pid.get(roles.get(role), []):
                if when >= t and n == event and (role != "W" or d == hex(pid)):
                    found = when
                    break
            if found is None:
                ok = False
                break
            steps.append(found - t)
            t = found
        if ok:
            runs.append(steps)
    return runs


def run_breakdown(opts, rows, notes):
    """Traces --breakdown runs of the openshell row (and of bwrap, for its total alone)."""
    if os.geteuid() != 0 or not (TRACEFS / "instances").is_dir():
        notes.append(f"--breakdown skipped: needs root and tracefs at {TRACEFS}")
        return None
    row = next((r for r in rows if r.name == "openshell run"), None)
    bwrap = next((r for r in rows if r.name == "bwrap"), None)
    if row is None:
        notes.append("--breakdown skipped: no openshell row")
        return None
    binary = os.path.realpath(row.args[0])
    log(f"breakdown: tracing {opts.breakdown} openshell runs")
    try:
        with Tracer() as tracer:
            text = tracer.collect([lambda: timed(row.args)] * opts.breakdown)
        bwrap_text = None
        if bwrap:
            with Tracer() as tracer:
                bwrap_text = tracer.collect([lambda: timed(bwrap.args)] * opts.breakdown)
    except OSError as e:
        notes.append(f"--breakdown failed: {e}")
        return None
    steps = breakdown_of(parse_trace(text), binary)
    if not steps:
        notes.append("--breakdown: no complete run in the trace (events missing or lost)")
        return None
    result = {"runs": len(steps), "steps": []}
    for i, (label, _role, _event) in enumerate(BREAKDOWN_MARKS):
        result["steps"].append((label, statistics.median(s[i] for s in steps)))
    result["total"] = statistics.median(sum(s) for s in steps)
    if bwrap_text:
        result["bwrap_total"] = bwrap_traced_total(parse_trace(bwrap_text))
    return result


def bwrap_traced_total(events):
    """Median ms from bwrap's exec to the caller's wait returning it, under the same tracing."""
    execs = {pid: ms for pid, ms, name, detail in events
             if name == "sched_process_exec" and "/bwrap " in detail + " "}
    totals = [ms - execs[int(d, 16)] for _, ms, name, d in events
              if name == "exit_wait4" and d.startswith("0x") and int(d, 16) in execs]
    return statistics.median(totals) if totals else None


# ---- report ------------------------------------------------------------------------------------

def fmt(value, digits=2):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def report(rows, opts, notes, traced):
    stats = {row.name: row.stats() for row in rows}
    out = [f"### openshell run start-up ({opts.rounds_done} interleaved rounds of each row after "
           f"{opts.warmup} warm-up runs; {os.cpu_count()} CPUs, load average "
           f"{opts.loadavg:.2f} at start; kernel {os.uname().release})\n"]
    head = ["row", "p50 ms", "p95 ms", "mean ms", "p50 / bwrap", "mean / bwrap",
            "p50 − /bin/true ms", "failed"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s = stats[row.name]
        base = stats.get(row.baseline.name) if row.baseline else None
        fl = stats.get(row.floor.name) if row.floor else None
        cells = [row.name]
        if s is None:
            cells += ["n/a"] * 6
        else:
            cells += [fmt(s["p50"]), fmt(s["p95"]), fmt(s["mean"])]
            cells += [fmt(ratio(s["p50"], base["p50"])) + "×" if base else "—",
                      fmt(ratio(s["mean"], base["mean"])) + "×" if base else "—"]
            cells.append(fmt(s["p50"] - fl["p50"]) if fl else "—")
        cells.append(str(row.failures) + (f" ({row.first_failure})" if row.failures else ""))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Wall time from before fork to after wait (`subprocess.Popen`, stdio on "
               "/dev/null, exit seen through a pidfd). The `(nobody)` rows run through `setpriv` "
               "as uid/gid 65534 and are compared with `bwrap (nobody)` and `/bin/true (nobody)`.")
    out.append("\nCommands:\n")
    for row in rows:
        out.append(f"- {row.name}: `{' '.join(row.args)}`")
    if opts.checks:
        out.append("\nopenshell's default policy, as seen from inside the sandbox:\n")
        for name, check in opts.checks.items():
            out.append(f"- {name}: {'on' if check['ok'] else 'NOT fully on'}: {check['seen']}")

    out.append("")
    os_row, bw_row = stats.get("openshell run"), stats.get("bwrap")
    layers_on = opts.checks.get("openshell run", {}).get("ok", False)
    if os_row and bw_row:
        ok = os_row["p50"] <= bw_row["p50"] and layers_on
        out.append(f"Target: {TARGET}: **{'PASS' if ok else 'FAIL'}** ({fmt(os_row['p50'])} ms "
                   f"against {fmt(bw_row['p50'])} ms, "
                   f"{fmt(ratio(os_row['p50'], bw_row['p50']))}×"
                   f"{'' if layers_on else '; the layers were not all on'})")
    else:
        out.append(f"Target: {TARGET}: **n/a** (a row is missing)")
    os_nb, bw_nb = stats.get("openshell run (nobody)"), stats.get("bwrap (nobody)")
    if os_nb and bw_nb:
        out.append(f"\nUnprivileged (extra, no target): openshell run p50 {fmt(os_nb['p50'])} ms "
                   f"against bwrap {fmt(bw_nb['p50'])} ms "
                   f"({fmt(ratio(os_nb['p50'], bw_nb['p50']))}×)")

    if traced:
        out.append(f"\nWhere an `openshell run` goes (median of {traced['runs']} traced runs; "
                   "steps end at the syscall or process event named in run_bench.py's "
                   "BREAKDOWN_MARKS; tracing adds a little to each):\n")
        out += ["| step | ms | share |", "|---|---|---|"]
        for label, ms in traced["steps"]:
            out.append(f"| {label} | {fmt(ms)} | {100 * ms / traced['total']:.0f} % |")
        out.append(f"| **total, exec to the caller's wait** | **{fmt(traced['total'])}** | |")
        if traced.get("bwrap_total") is not None:
            out.append(f"\nbwrap under the same tracing, exec to the caller's wait: "
                       f"{fmt(traced['bwrap_total'])} ms")
    for note in notes:
        out.append(f"\nNote: {note}")
    return "\n".join(out), stats


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=None,
                    help="meson build dir holding src/cli/openshell (default build/release)")
    ap.add_argument("--openshell", type=Path,
                    help="openshell binary (default BUILD/src/cli/openshell, else BUILD/openshell)")
    ap.add_argument("--also-openshell", type=Path, action="append", default=[],
                    metavar="PATH", help="another openshell binary as an extra row (repeatable), "
                    "e.g. a -Dproxy=disabled build")
    ap.add_argument("--runs", type=int, default=200, help="recorded runs of each row")
    ap.add_argument("--warmup", type=int, default=10, help="unrecorded runs of each row first")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 runs, 3 warm-up")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                    help="stop measuring after this long, whatever rounds are left")
    ap.add_argument("--no-rootless", action="store_true",
                    help="as root, skip the rows run as nobody through setpriv")
    ap.add_argument("--no-load-row", action="store_true",
                    help="skip the `openshell --version` row (the binary's load time)")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="after the table, trace N more openshell runs (root, tracefs) and "
                    "report the time of each start-up step")
    ap.add_argument("--json", type=Path, help="also write raw results (every run's ns) here")
    opts = ap.parse_args()
    if opts.quick:
        opts.runs, opts.warmup = 20, 3
    if opts.runs < 1 or opts.warmup < 0 or opts.breakdown < 0:
        ap.error("--runs must be ≥ 1, --warmup and --breakdown ≥ 0")
    opts.build = Path(opts.build) if opts.build else REPO_ROOT / "build" / "release"
    opts.build = opts.build.resolve()
    if not opts.openshell:
        candidates = [opts.build / "src" / "cli" / "openshell", opts.build / "openshell"]
        opts.openshell = next((c for c in candidates if c.is_file()), candidates[0])
    opts.openshell = opts.openshell.resolve()
    opts.also_openshell = [p.resolve() for p in opts.also_openshell]
    return opts


def main():
    opts = parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, raise_on_signal)
    opts.loadavg = os.getloadavg()[0]  # other work on the host shows up as noise
    if os.geteuid() != 0:
        log("not root: every row runs as the caller (openshell rootless); no (nobody) rows")
    notes = []
    rows = make_rows(opts, notes)
    log(f"{len(rows)} rows, {opts.runs} runs each after {opts.warmup} warm-up: "
        + ", ".join(r.name for r in rows))
    measure(rows, opts)
    traced = run_breakdown(opts, rows, notes) if opts.breakdown else None
    text, stats = report(rows, opts, notes, traced)
    print(text)
    if opts.json:
        opts.json.write_text(json.dumps({
            "stats": stats, "checks": opts.checks, "breakdown": traced,
            "runs_ns": {r.name: r.ns for r in rows},
            "commands": {r.name: r.args for r in rows}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
