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
import shutil
import signal
import statistics
import sys
from pathlib import Path

from bench_common import breakdown_lines
from bench_common import (REPO_ROOT, Row, build_label, check_layers, find_openshell, fmt, probe,
                          ratio, stats_table, timed)
from bench_common import measure as measure_rounds
from bench_trace import TRACEFS, Tracer, breakdown_of, bwrap_traced_total, parse_trace

# The measurement stops here even if rounds are left (the report says how many ran).
DEFAULT_MAX_SECONDS = 900.0
# The unprivileged rows' identity: nobody/nogroup, as setpriv takes them.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
TRUE = "/bin/true"
BWRAP = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
UNSHARE = ["unshare", "-U", "-r", "-n"]
TARGET = "openshell run p50 ≤ bwrap p50 (while applying Landlock and seccomp)"


def log(msg):
    print(f"[run_bench] {msg}", file=sys.stderr, flush=True)


def raise_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def check_openshell(binary, prefix):
    """Whether the default policy's layers are on: (ok, what was seen, problem or None)."""
    return check_layers(prefix + [str(binary), "run", "--network", "none", "--log-level", "info",
                                  "--log-format", "text", "--"],
                        expect_uid_change=os.geteuid() == 0 and not prefix)


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
    opts.rounds_done = measure_rounds(rows, opts.runs, opts.warmup, opts.max_seconds, log)


# ---- --breakdown: where an openshell run's time goes -------------------------------------------

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
        with Tracer("run_bench") as tracer:
            text = tracer.collect([lambda: timed(row.args)] * opts.breakdown)
        bwrap_text = None
        if bwrap:
            with Tracer("run_bench") as tracer:
                bwrap_text = tracer.collect([lambda: timed(bwrap.args)] * opts.breakdown)
    except OSError as e:
        notes.append(f"--breakdown failed: {e}")
        return None
    steps = breakdown_of(parse_trace(text), binary, BREAKDOWN_MARKS)
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


# ---- report ------------------------------------------------------------------------------------

def report(rows, opts, notes, traced):
    out = [f"### openshell run start-up ({opts.rounds_done} interleaved rounds of each row after "
           f"{opts.warmup} warm-up runs; {os.cpu_count()} CPUs, load average "
           f"{opts.loadavg:.2f} at start; kernel {os.uname().release})\n"]
    table, stats = stats_table(rows)
    out += table
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
        out += breakdown_lines(traced, "openshell run", "run_bench.py's BREAKDOWN_MARKS")
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
    opts.openshell = opts.openshell.resolve() if opts.openshell else find_openshell(opts.build)
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
