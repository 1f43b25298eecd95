"""Helpers shared by the start-up benchmarks (run_bench.py, sandbox_bench.py).

Timing one short-lived process without rounding it up, running rows in interleaved rounds, and
rendering p50/p95/mean tables with ratios against a baseline row.
"""

import os
import re
import select
import statistics
import subprocess
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# A sandbox around /bin/true starts in milliseconds; a run this slow is wedged, not slow.
RUN_TIMEOUT_S = 10.0
# Every row runs from /: the sandbox keeps the caller's cwd, and nobody can traverse /.
RUN_CWD = "/"


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


def measure(rows, runs, warmup, max_seconds, log):
    """Warm-up runs of each row, then `runs` rounds of every row once; returns rounds done.

    The order rotates each round: no row always runs right after the same neighbour, and drift
    on a noisy host hits every row alike.
    """
    for row in rows:
        for _ in range(warmup):
            timed(row.args)
    deadline = time.monotonic() + max_seconds
    done = 0
    for rnd in range(runs):
        if time.monotonic() > deadline:
            log(f"stopping after {rnd} rounds: --max-seconds {max_seconds:g} reached")
            break
        shift = rnd % len(rows)
        for row in rows[shift:] + rows[:shift]:
            ns, rc = timed(row.args)
            if rc == 0:
                row.ns.append(ns)
            else:
                row.failures += 1
                row.first_failure = row.first_failure or (
                    "timeout" if rc is None else f"exit {rc}")
        done = rnd + 1
        if done % 50 == 0:
            log(f"{done}/{runs} rounds")
    return done


def build_label(binary):
    """`build/NAME/...` for a binary of this repo, else the path: tells extra builds apart."""
    try:
        rel = binary.relative_to(REPO_ROOT)
    except ValueError:
        return str(binary)
    return "/".join(rel.parts[:2]) if rel.parts[:1] == ("build",) else str(rel)


def find_openshell(build):
    """BUILD/src/cli/openshell, else BUILD/openshell (the first that exists), resolved."""
    candidates = [build / "src" / "cli" / "openshell", build / "openshell"]
    return next((c for c in candidates if c.is_file()), candidates[0]).resolve()


def status_fields(text):
    return {k: v.strip() for k, v in re.findall(r"^(\w+):\s*(.*)$", text, re.M)}


# What the sandboxed shell prints for check_layers.
SHOW_STATUS = ("grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' "
               "/proc/self/status")


def check_layers(command, expect_uid_change):
    """Whether openshell's default layers are on: (ok, what was seen, problem or None).

    `command` is the openshell invocation up to and including `--`, at --log-level info. The log
    says whether the Landlock ruleset was built; the sandboxed shell's own /proc/self/status
    shows the seccomp filter, no_new_privs, the uid and the capability sets.
    """
    rc, out, err = probe(command + ["/bin/sh", "-c", SHOW_STATUS])
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
    if expect_uid_change and uid == "0":
        problems.append("still uid 0")
    for cap in ("CapEff", "CapBnd", "CapAmb"):
        if int(fields.get(cap, "1"), 16) != 0:
            problems.append(f"{cap}: {fields.get(cap)}")
    seen = (f"{landlock.group(0) if landlock else 'no Landlock line'}; seccomp mode "
            f"{fields.get('Seccomp')} ({fields.get('Seccomp_filters', '?')} filter), "
            f"NoNewPrivs {fields.get('NoNewPrivs')}, uid {uid}, CapEff/CapBnd/CapAmb "
            f"{fields.get('CapEff')}/{fields.get('CapBnd')}/{fields.get('CapAmb')}")
    return not problems, seen, "; ".join(problems) or None


def fmt(value, digits=2):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def stats_table(rows, baseline_name="bwrap"):
    """Markdown lines: p50/p95/mean, ratios against each row's baseline, minus its floor."""
    stats = {row.name: row.stats() for row in rows}
    head = ["row", "p50 ms", "p95 ms", "mean ms", f"p50 / {baseline_name}",
            f"mean / {baseline_name}", "p50 − /bin/true ms", "failed"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
    return out, stats


def breakdown_lines(traced, what, marks):
    """The traced breakdown as Markdown lines: where one `what` run goes, step by step."""
    out = [f"\nWhere an `{what}` run goes (median of {traced['runs']} traced runs; steps end at "
           f"the events named in {marks}; tracing adds a little to each):\n",
           "| step | ms | share |", "|---|---|---|"]
    for label, ms in traced["steps"]:
        out.append(f"| {label} | {fmt(ms)} | {100 * ms / traced['total']:.0f} % |")
    out.append(f"| **total, exec to the caller's wait** | **{fmt(traced['total'])}** | |")
    if traced.get("bwrap_total") is not None:
        out.append(f"\nbwrap under the same tracing, exec to the caller's wait: "
                   f"{fmt(traced['bwrap_total'])} ms")
    return out
