#!/usr/bin/env python3
"""Sandbox start-up benchmark (issue 7): `openshell sandbox` and `openshell run` against bwrap.

Usage: tests/bench/sandbox_bench.py [BUILD_DIR]   (default build/release; builds nothing itself)

Times, from fork to exit, `/bin/true` in `openshell sandbox` (proxy up, Landlock, seccomp, own
network namespace), in `openshell run --network none`, in bwrap set up alike, and alone (the
floor); the rows take turns in rounds so noise on the host hits them all alike. Prints a
markdown table with p50/p95/mean and ratios against bwrap, and the target line.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
from pathlib import Path

from bench_common import breakdown_lines
from bench_common import (REPO_ROOT, Row, check_layers, find_openshell, fmt, measure, probe,
                          ratio, stats_table, timed)
from bench_trace import TRACEFS, Tracer, breakdown_of, bwrap_traced_total, parse_trace

TRUE = "/bin/true"
DEFAULT_MAX_SECONDS = 900.0
# openshell sandbox p50 may be at most this many times bwrap's (issue 7).
TARGET_RATIO = 1.5
TARGET = f"openshell sandbox p50 ≤ {TARGET_RATIO:g} × bwrap p50 (Landlock and seccomp on)"


# --breakdown: where an `openshell sandbox` run goes. Each step ends at the first event named here
# in that process after the previous mark (see bench_trace.breakdown_of): P is openshell, S its
# spawner, I the sandbox's init (pid 1 inside), M the main process, W this script.
SANDBOX_MARKS = [
    ("start-up: exec, dynamic loading, static constructors, CLI, policy, user lookup (NSS), "
     "trust dir", "P", "enter_landlock_create_ruleset"),
    ("Landlock ruleset prepared in the caller; seccomp filters compiled and probed", "P",
     "enter_clone"),
    ("fork of the spawner (the caller's whole address space)", "P", "exit_clone"),
    ("interception CA (key + certificate), system CA bundle, trust files written, spawn request",
     "P", "enter_sendmsg"),
    ("spawner receives the request, builds the plan", "S", "enter_clone"),
    ("clone of the init into new pid/mount/net/ipc/uts namespaces", "I", "exit_clone"),
    ("init: signals reset, parent-death signal", "I", "enter_mount"),
    ("init: mounts (/ slave, /tmp, /run, /proc), lo up, proxy listener handed over, seccomp "
     "notify filter, Landlock ruleset", "I", "enter_clone"),
    ("fork of the main process", "M", "exit_clone"),
    ("main: setsid, chdir, privilege drop, Landlock, seccomp, close fds", "M", "enter_execve"),
    ("execve of /bin/true", "M", "sched_process_exec"),
    ("/bin/true runs (openshell meanwhile gets 'started' and starts the proxy's threads)", "M",
     "enter_exit_group"),
    ("init exits, spawner reports; openshell stops the proxy, joins its threads, reaps the "
     "spawner, exits", "P", "sched_process_exit"),
    ("teardown until the caller's wait returns", "W", "exit_wait4"),
]


def log(msg):
    print(f"[sandbox_bench] {msg}", file=sys.stderr, flush=True)


def raise_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def bwrap_args():
    """bwrap with roughly what `openshell sandbox` builds: every namespace, the system read-only,
    fresh /proc, /dev and /tmp, dies with its parent, its own session.

    /bin, /sbin and /lib* become the same symlinks into /usr as on the host (merged /usr), or
    read-only binds where they are real directories.
    """
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    args += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
             "--"]
    return args


def openshell_args(binary, subcommand, log_level="warn"):
    """`openshell sandbox|run [...] --log-level L --`, or None when the subcommand is missing."""
    rc, _, _ = probe([str(binary), subcommand, "--help"])
    if rc != 0:
        return None
    args = [str(binary), subcommand]
    if subcommand == "run":
        args += ["--network", "none"]
    return args + ["--log-level", log_level, "--log-format", "text", "--"]


def make_rows(opts, notes):
    """The rows that can run here; each must exit 0 once, unmeasured, or it is left out."""
    floor = Row("/bin/true", [TRUE])
    rows = [floor]
    bwrap = None
    if shutil.which("bwrap"):
        bwrap = Row("bwrap", bwrap_args() + [TRUE], floor=floor)
        bwrap.baseline = bwrap
        rows.append(bwrap)
    else:
        notes.append("bwrap is not installed: no ratios, no target")

    opts.checks = {}
    binary = opts.openshell
    if not binary.is_file():
        notes.append(f"openshell rows skipped: {binary} not found (build it first)")
    else:
        for name, sub in (("openshell sandbox", "sandbox"),
                          ("openshell run --network none", "run")):
            args = openshell_args(binary, sub)
            if args is None:
                notes.append(f"{name} skipped: '{binary} {sub} --help' fails (not built in)")
                continue
            rows.append(Row(name, args + [TRUE], bwrap, floor))
            ok, seen, problem = check_layers(openshell_args(binary, sub, "info"),
                                             expect_uid_change=os.geteuid() == 0)
            opts.checks[name] = {"ok": ok, "seen": seen, "problem": problem}
            if not ok:
                notes.append(f"{name}: default policy not fully applied: {problem}")
        if not opts.no_load_row:
            # Loading the binary alone (dynamic linking, static constructors, CLI parsing).
            rows.append(Row("openshell --version (load only)", [str(binary), "--version"],
                            bwrap, floor))

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
        if err.strip() and row.name.startswith("openshell"):
            notes.append(f"{row.name} wrote to stderr at --log-level warn: {err.strip()[-300:]}")
        usable.append(row)
    return usable


def run_breakdown(opts, rows, notes):
    """Traces --breakdown runs of `openshell sandbox` (and of bwrap, for its total alone)."""
    if os.geteuid() != 0 or not (TRACEFS / "instances").is_dir():
        notes.append(f"--breakdown skipped: needs root and tracefs at {TRACEFS}")
        return None
    row = next((r for r in rows if r.name == "openshell sandbox"), None)
    bwrap = next((r for r in rows if r.name == "bwrap"), None)
    if row is None:
        notes.append("--breakdown skipped: no openshell sandbox row")
        return None
    log(f"breakdown: tracing {opts.breakdown} openshell sandbox runs")
    try:
        with Tracer("sandbox_bench") as tracer:
            text = tracer.collect([lambda: timed(row.args)] * opts.breakdown)
        bwrap_text = None
        if bwrap:
            with Tracer("sandbox_bench") as tracer:
                bwrap_text = tracer.collect([lambda: timed(bwrap.args)] * opts.breakdown)
    except OSError as e:
        notes.append(f"--breakdown failed: {e}")
        return None
    steps = breakdown_of(parse_trace(text), os.path.realpath(row.args[0]), SANDBOX_MARKS)
    if not steps:
        notes.append("--breakdown: no complete run in the trace (events missing or lost)")
        return None
    result = {"runs": len(steps), "steps": [], "total": statistics.median(sum(s) for s in steps)}
    for i, (label, _role, _event) in enumerate(SANDBOX_MARKS):
        result["steps"].append((label, statistics.median(s[i] for s in steps)))
    if bwrap_text:
        result["bwrap_total"] = bwrap_traced_total(parse_trace(bwrap_text))
    return result


def report(rows, opts, notes, traced):
    out = [f"### Sandbox start-up ({opts.rounds_done} interleaved rounds of each row after "
           f"{opts.warmup} warm-up runs; {os.cpu_count()} CPUs, load average "
           f"{opts.loadavg:.2f} at start; kernel {os.uname().release}; "
           f"{'root' if os.geteuid() == 0 else 'not root'})\n"]
    table, stats = stats_table(rows)
    out += table
    out.append("\nWall time from before fork to after wait (`subprocess.Popen`, stdio on "
               "/dev/null, cwd /, exit seen through a pidfd).\n\nCommands:\n")
    for row in rows:
        out.append(f"- {row.name}: `{' '.join(row.args)}`")
    if opts.checks:
        out.append("\nopenshell's default policy, as seen from inside the sandbox:\n")
        for name, check in opts.checks.items():
            out.append(f"- {name}: {'on' if check['ok'] else 'NOT fully on'}: {check['seen']}")
    out.append("")
    sb, bw = stats.get("openshell sandbox"), stats.get("bwrap")
    layers_on = opts.checks.get("openshell sandbox", {}).get("ok", False)
    if sb and bw:
        r = ratio(sb["p50"], bw["p50"])
        ok = r <= TARGET_RATIO and layers_on
        out.append(f"Target: {TARGET}: **{'PASS' if ok else 'FAIL'}** ({fmt(sb['p50'])} ms "
                   f"against {fmt(bw['p50'])} ms, {fmt(r)}×; the target allows "
                   f"{fmt(TARGET_RATIO * bw['p50'])} ms"
                   f"{'' if layers_on else '; the layers were not all on'})")
    else:
        out.append(f"Target: {TARGET}: **n/a** (a row is missing)")
    if traced:
        out += breakdown_lines(traced, "openshell sandbox", "sandbox_bench.py's SANDBOX_MARKS")
    for note in notes:
        out.append(f"\nNote: {note}")
    return "\n".join(out), stats


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=None,
                    help="meson build dir holding src/cli/openshell (default build/release)")
    ap.add_argument("--openshell", type=Path,
                    help="openshell binary (default BUILD/src/cli/openshell, else BUILD/openshell)")
    ap.add_argument("--runs", type=int, default=200, help="recorded runs of each row")
    ap.add_argument("--warmup", type=int, default=10, help="unrecorded runs of each row first")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 runs, 3 warm-up")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                    help="stop measuring after this long, whatever rounds are left")
    ap.add_argument("--no-load-row", action="store_true",
                    help="skip the `openshell --version` row (the binary's load time)")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="after the table, trace N more openshell sandbox runs (root, tracefs) "
                    "and report the time of each start-up step")
    ap.add_argument("--json", type=Path, help="also write raw results (every run's ns) here")
    opts = ap.parse_args()
    if opts.quick:
        opts.runs, opts.warmup = 20, 3
    if opts.runs < 1 or opts.warmup < 0 or opts.breakdown < 0:
        ap.error("--runs must be ≥ 1, --warmup and --breakdown ≥ 0")
    build = Path(opts.build) if opts.build else REPO_ROOT / "build" / "release"
    opts.openshell = opts.openshell.resolve() if opts.openshell else find_openshell(build.resolve())
    return opts


def main():
    opts = parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, raise_on_signal)
    opts.loadavg = os.getloadavg()[0]  # other work on the host shows up as noise
    notes = []
    rows = make_rows(opts, notes)
    log(f"{len(rows)} rows, {opts.runs} runs each after {opts.warmup} warm-up: "
        + ", ".join(r.name for r in rows))
    opts.rounds_done = measure(rows, opts.runs, opts.warmup, opts.max_seconds, log)
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
