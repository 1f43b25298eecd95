"""Kernel tracing for the start-up benchmarks' --breakdown (run_bench.py, sandbox_bench.py).

A tracefs instance of our own records sched and syscall tracepoints for our descendants only;
a run is then cut into steps at named events of its processes.
"""

import os
import re
import statistics
from pathlib import Path

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


class Tracer:
    """A tracefs instance that records `events` for this process's descendants."""

    def __init__(self, name, events=TRACE_EVENTS):
        self.dir = TRACEFS / "instances" / f"openshell_{name}_{os.getpid()}"
        self.events = events

    def write(self, name, value):
        (self.dir / name).write_text(str(value))

    def __enter__(self):
        self.dir.mkdir()
        try:
            self.write("buffer_size_kb", TRACE_BUFFER_KIB)
            self.write("trace_clock", "mono")
            for event in self.events:
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


def breakdown_of(events, binary, marks):
    """Per run, the ms of each step of `marks`; runs that miss a mark are dropped.

    `marks` lists (step label, role, event): a step ends at the first `event` of that role's
    process after the previous mark. P is `binary`'s process, S its first child, I S's first
    child, M I's first child, W the caller (whose wait4 returns P).
    """
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
        for _label, role, event in marks:
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


def bwrap_traced_total(events):
    """Median ms from bwrap's exec to the caller's wait returning it, under the same tracing."""
    execs = {pid: ms for pid, ms, name, detail in events
             if name == "sched_process_exec" and "/bwrap " in detail + " "}
    totals = [ms - execs[int(d, 16)] for _, ms, name, d in events
              if name == "exit_wait4" and d.startswith("0x") and int(d, 16) in execs]
    return statistics.median(totals) if totals else None
