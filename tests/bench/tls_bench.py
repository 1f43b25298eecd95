#!/usr/bin/env python3
"""Side-by-side TLS interception benchmark: direct HTTPS, openshell's plain CONNECT tunnel,
openshell intercepting, and mitmproxy, in one run.

Usage: tests/bench/tls_bench.py [BUILD_DIR] [--quick]   (default build/release; builds nothing)

Makes a throwaway PKI with the `openssl` CLI, starts its own multi-process HTTPS origin, two
openshell proxies (an L4 policy: tunnel relayed untouched; an L7 `protocol: rest` policy: TLS
terminated and every request decided) and mitmdump on free loopback ports in a temp dir, then
measures (c) RSS per idle intercepted connection, (a) keep-alive requests/s with proxy CPU per
request and (b) latency of the first request on a new connection, prints markdown tables with
the issue's targets, and stops every process it started.
"""

import argparse
import array
import json
import math
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The existing proxy benchmark's process, /proc and formatting helpers (same directory; no
# __pycache__ left in the source tree).
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_bench import (BenchError, LineReader, Processes, fmt, free_port,  # noqa: E402
                         port_answers, raise_on_signal, tree_cpu_s, tree_rss_kib, verdict)

REPO_ROOT = Path(__file__).resolve().parents[2]

# Targets from the issue (for openshell intercepting).
TARGET_RPS_RATIO = 5.0  # keep-alive requests/s >= 5x mitmproxy's
TARGET_ADDED_FIRST_P50_MS = 2.0  # first request on a new connection, leaf cached, vs direct
TARGET_KIB_PER_CONN = 160.0  # RSS per idle intercepted connection

BODY_BYTES = 1024
# Generous bounds so a wedged peer fails the run instead of hanging it.
START_TIMEOUT_S = 20.0
IO_TIMEOUT_S = 10.0  # any single client read or write
EXTRA_WAIT_S = 60.0  # beyond a phase's planned length before the run gives up on it
SETTLE_S = 1.0  # let a proxy finish allocating before RSS is read
NEW_CONN_BLOCKS = 5  # (b) alternates rows this many times so drift on the host hits them all
ORIGIN_LIFETIME_S = 3600  # the origin exits by itself even if this script is SIGKILLed
ORIGIN_IDLE_TIMEOUT_S = 300

ROWS = ("direct", "openshell-tunnel", "openshell-intercept", "mitmproxy")
ROW_HELP = {
    "direct": "client to origin, no proxy",
    "openshell-tunnel": "openshell, L4 endpoint: CONNECT tunnel relayed untouched",
    "openshell-intercept": "openshell, L7 endpoint (protocol: rest): TLS terminated, "
                           "every request decided, new TLS 1.2 to the origin",
    "mitmproxy": "mitmdump, regular mode, origin verified against the origin CA",
}

_CA_EXT = """basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
_LEAF_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def log(msg):
    print(f"[tls_bench] {msg}", file=sys.stderr, flush=True)


# Test PKI ---------------------------------------------------------------------------------------

def openssl(*args):
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          timeout=30)
    if done.returncode != 0:
        raise BenchError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_pki(d):
    """ECDSA P-256 root CA and an origin certificate it signs (IP:127.0.0.1, DNS:localhost)."""
    d.mkdir()
    (d / "ca.cnf").write_text("[req]\ndistinguished_name = dn\nprompt = no\n"
                              f"[dn]\nCN = tls_bench origin root\n[ext]\n{_CA_EXT}")
    (d / "origin.cnf").write_text("[req]\ndistinguished_name = dn\nprompt = no\n"
                                  f"[dn]\nCN = localhost\n[ext]\n{_LEAF_EXT}")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", "-config", d / "ca.cnf", "-extensions", "ext", *ec,
            "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2", "-sha256",
            "-set_serial", "0x" + secrets.token_hex(8))
    openssl("req", "-new", "-config", d / "origin.cnf", *ec, "-keyout", d / "origin.key",
            "-out", d / "origin.csr")
    openssl("x509", "-req", "-in", d / "origin.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
            "-set_serial", "0x" + secrets.token_hex(8), "-days", "2", "-sha256",
            "-extfile", d / "origin.cnf", "-extensions", "ext", "-out", d / "origin.pem")
    return d / "ca.pem", d / "origin.pem", d / "origin.key"


# Origin: pre-forked workers on one listening socket, a thread per connection ------------------

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % BODY_BYTES) + b"x" * BODY_BYTES


def content_length(head_lower):
    i = head_lower.find(b"\r\ncontent-length:")
    if i < 0:
        return 0
    end = head_lower.find(b"\r\n", i + 2)
    return int(head_lower[i + 17:end if end >= 0 else None].strip())


def origin_connection(raw, context):
    try:
        raw.settimeout(ORIGIN_IDLE_TIMEOUT_S)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = context.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError):
        raw.close()
        return
    buf = b""
    try:
        while True:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head = buf[:end].lower()
            body_end = end + 4 + content_length(head)
            while len(buf) < body_end:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[body_end:]
            tls.sendall(RESPONSE)
            if b"\r\nconnection: close" in head:
                return
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        tls.close()


def origin_worker(listener, context, master):
    def watchdog():  # the master is gone (SIGKILL, lifetime): go too
        while os.getppid() == master:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    threading.stack_size(256 * 1024)
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=origin_connection, args=(raw, context), daemon=True).start()


def origin_main(argv):
    ap = argparse.ArgumentParser(prog="tls_bench.py origin")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--workers", type=int, default=2)
    opts = ap.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # openshell's upstream client speaks 1.2
    context.load_cert_chain(opts.cert, opts.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    master = os.getpid()
    workers = []
    for _ in range(opts.workers):
        pid = os.fork()
        if pid == 0:
            origin_worker(listener, context, master)
            os._exit(0)
        workers.append(pid)
    print(json.dumps({"port": listener.getsockname()[1], "workers": workers}), flush=True)
    signal.alarm(ORIGIN_LIFETIME_S)  # default action ends the master; workers follow
    os.waitpid(-1, 0)  # a worker died: the origin is broken, stop
    return 1


# Client side ------------------------------------------------------------------------------------

class Target:
    """How a client reaches the origin: directly or through a proxy, and which CA it trusts."""

    def __init__(self, name, origin_port, proxy_port, cafile, curve=None):
        self.name, self.origin_port, self.proxy_port = name, origin_port, proxy_port
        self.cafile, self.curve = str(cafile), curve
        self.request = (f"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n"
                        "User-Agent: tls_bench\r\nAccept: */*\r\n\r\n").encode()

    def context(self):
        context = ssl.create_default_context(cafile=self.cafile)  # verifies chain and IP SAN
        if self.curve:  # else OpenSSL's default groups, as curl and most clients offer them
            context.set_ecdh_curve(self.curve)
        return context

    def connect(self, context, session=None):
        """TCP (+ CONNECT) + TLS handshake (resuming `session` if given); the returned socket
        is ready for requests."""
        port = self.proxy_port or self.origin_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.proxy_port:
                authority = f"127.0.0.1:{self.origin_port}"
                sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
                             .encode())
                reply = b""
                while b"\r\n\r\n" not in reply:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("proxy closed the connection after CONNECT")
                    reply += chunk
                if reply.split(b" ", 2)[1] != b"200":
                    raise OSError(f"CONNECT answered {reply.splitlines()[0]!r}")
            return context.wrap_socket(sock, server_hostname="127.0.0.1", session=session)
        except BaseException:
            sock.close()
            raise

    def exchange(self, tls, buf=b""):
        """One GET on a keep-alive connection; returns bytes read past the response."""
        tls.sendall(self.request)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = tls.recv(65536)
            if not chunk:
                raise OSError("connection closed before the response head")
            buf += chunk
        if buf[9:12] != b"200":
            raise OSError(f"response {buf[:end].splitlines()[0]!r}")
        body_end = end + 4 + content_length(buf[:end].lower())
        while len(buf) < body_end:
            chunk = tls.recv(65536)
            if not chunk:
                raise OSError("connection closed inside the response body")
            buf += chunk
        if body_end - end - 4 != BODY_BYTES:
            raise OSError(f"body of {body_end - end - 4} bytes, expected {BODY_BYTES}")
        return buf[body_end:]


def host_busy_s():
    """CPU seconds all cores of the host spent busy since boot (from /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)]


def rps_client(pipe, target):
    """One keep-alive connection in a loop: warm-up until t_start, counted until t_end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        tls = target.connect(target.context())
        buf = target.exchange(tls)
    except Exception as e:  # noqa: BLE001 -- reported to the parent, which decides
        pipe.send(("error", repr(e)))
        return
    pipe.send(("ready", None))
    if not pipe.poll(START_TIMEOUT_S + EXTRA_WAIT_S):
        return
    t_start, t_end = pipe.recv()
    latencies, errors, first_error = array.array("d"), 0, None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    try:
        while time.monotonic() < t_start:
            buf = target.exchange(tls, buf)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        while (t0 := time.monotonic()) < t_end:
            buf = target.exchange(tls, buf)
            latencies.append(time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001
        errors, first_error = 1, repr(e)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    tls.close()
    pipe.send(("done", {"latencies": latencies.tobytes(), "errors": errors,
                        "first_error": first_error,
                        "cpu_s": usage.ru_utime + usage.ru_stime - cpu0}))


def idle_holder(pipe, target, count):
    """Opens `count` connections (one request each) and holds them until told to check them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    context, conns, first_error = target.context(), [], None
    for _ in range(count):
        try:
            tls = target.connect(context)
            target.exchange(tls)
            conns.append(tls)
        except Exception as e:  # noqa: BLE001
            first_error = repr(e)
            break
    pipe.send(("ready", {"open": len(conns), "first_error": first_error}))
    if not pipe.poll(EXTRA_WAIT_S):
        return
    pipe.recv()
    alive = 0
    for tls in conns:
        try:
            tls.settimeout(IO_TIMEOUT_S)
            target.exchange(tls)
            alive += 1
        except Exception as e:  # noqa: BLE001
            first_error = first_error or repr(e)
        tls.close()
    pipe.send(("done", {"alive": alive, "first_error": first_error}))


class Children:
    """multiprocessing children of this script; stop_all() ends the ones still running."""

    def __init__(self):
        self.ctx = multiprocessing.get_context("fork")
        self.running = []

    def start(self, target_fn, *args):
        parent_end, child_end = self.ctx.Pipe()
        proc = self.ctx.Process(target=target_fn, args=(child_end, *args), daemon=True)
        proc.start()
        child_end.close()
        self.running.append(proc)
        return proc, parent_end

    @staticmethod
    def receive(pipe, what, timeout):
        if not pipe.poll(timeout):
            raise BenchError(f"no answer from the {what} client within {timeout:.0f} s")
        try:
            return pipe.recv()
        except EOFError as e:
            raise BenchError(f"the {what} client exited without an answer") from e

    def stop(self, proc):
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self):
        for proc in list(self.running):
            self.stop(proc)


# Peers ------------------------------------------------------------------------------------------

class Peer:
    def __init__(self, name, port, proc, cafile):
        self.name, self.port, self.proc, self.cafile = name, port, proc, cafile


def wait_ready(name, proc, port, log_path, path=None):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}; see {log_path}")
        if port_answers(port) and (path is None or path.is_file()):
            return
        time.sleep(0.1)
    raise BenchError(f"{name} did not get ready on 127.0.0.1:{port}; see {log_path}")


def start_origin(procs, tmp, cert, key, workers):
    proc = procs.start("origin", [sys.executable, str(Path(__file__).resolve()), "origin",
                                  "--cert", str(cert), "--key", str(key),
                                  "--workers", str(workers)],
                       tmp / "origin.log", stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    port = LineReader(proc).json_line(timeout=START_TIMEOUT_S)["port"]
    wait_ready("origin", proc, port, tmp / "origin.log")
    return proc, port


def openshell_missing(binary):
    if not binary.is_file():
        return f"{binary} not found (build it first)"
    probe = subprocess.run([str(binary), "proxy", "--help"], capture_output=True, text=True,
                           timeout=10)
    if probe.returncode != 0:
        return f"'{binary} proxy --help' exited {probe.returncode}"
    if "--upstream-ca" not in probe.stdout or "--ca-out" not in probe.stdout:
        return f"'{binary} proxy' has no --upstream-ca/--ca-out: TLS interception not built"
    return None


def start_openshell(procs, tmp, name, binary, origin_port, origin_ca, l7, extra_args):
    d = tmp / name
    d.mkdir()
    port = free_port()
    l7_fields = ("        protocol: rest\n        enforcement: enforce\n        access: full\n"
                 if l7 else "")
    (d / "policy.yaml").write_text(f"""version: 1
network_policies:
  bench:
    name: bench
    endpoints:
      - host: 127.0.0.1
        port: {origin_port}
{l7_fields}""")
    ca_out = d / "proxy-ca.pem"
    args = [str(binary), "proxy", "--listen", f"127.0.0.1:{port}", "--policy",
            str(d / "policy.yaml"), "--allow-loopback-upstream", "--upstream-ca", str(origin_ca),
            "--ca-out", str(ca_out), "--log-level", "warn", *extra_args]
    log_path = d / "output.log"
    proc = procs.start(name, args, log_path, stdin=subprocess.DEVNULL)
    wait_ready(name, proc, port, log_path, ca_out)
    # The tunnel row's client trusts the origin CA only: a tunnel that intercepted would fail.
    return Peer(name, port, proc, ca_out if l7 else origin_ca)


def start_mitmproxy(procs, tmp, origin_ca):
    d = tmp / "mitmproxy"
    d.mkdir()
    port = free_port()
    args = ["mitmdump", "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--set", f"confdir={d}", "--set", f"ssl_verify_upstream_trusted_ca={origin_ca}"]
    log_path = d / "output.log"
    proc = procs.start("mitmproxy", args, log_path, stdin=subprocess.DEVNULL)
    ca = d / "mitmproxy-ca-cert.pem"
    wait_ready("mitmproxy", proc, port, log_path, ca)
    return Peer("mitmproxy", port, proc, ca)


# Measurements -----------------------------------------------------------------------------------

def smoke(target):
    """Two requests on one connection; returns the negotiated protocol and cipher."""
    tls = target.connect(target.context())
    try:
        target.exchange(tls, target.exchange(tls))
        return f"{tls.version()} {tls.cipher()[0]}"
    finally:
        tls.close()


def key_exchange(target):
    """The ECDHE group the server picks for an OpenSSL client offering the same groups as ours
    (Python's ssl module does not tell)."""
    args = ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{target.origin_port}",
            "-CAfile", target.cafile, "-verify_return_error"]
    if target.proxy_port:
        args += ["-proxy", f"127.0.0.1:{target.proxy_port}"]
    if target.curve:
        args += ["-curves", target.curve]
    try:
        done = subprocess.run(args, input="", capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "?"
    for line in done.stderr.splitlines():
        if line.startswith(("Server Temp Key:", "Peer Temp Key:")):
            parts = [p.strip() for p in line.split(":", 1)[1].split(",")]
            return parts[1] if parts[0] == "ECDH" and len(parts) > 1 else parts[0]
    return "?"


def measure_idle(children, target, peer, count):
    before = tree_rss_kib(peer.proc.pid)
    proc, pipe = children.start(idle_holder, target, count)
    try:
        kind, ready = children.receive(pipe, f"{target.name} idle", count * 0.2 + EXTRA_WAIT_S)
        time.sleep(SETTLE_S)
        during = tree_rss_kib(peer.proc.pid)
        pipe.send("check")
        kind, done = children.receive(pipe, f"{target.name} idle", count * 0.1 + EXTRA_WAIT_S)
    finally:
        children.stop(proc)
    return {"rss_idle_kib": before, "rss_conns_kib": during, "open": ready["open"],
            "alive": done["alive"], "kib_per_conn": (during - before) / max(1, ready["open"]),
            "first_error": ready["first_error"] or done["first_error"]}


def measure_rps(children, target, peer, origin_pid, opts):
    clients = []
    try:
        for _ in range(opts.clients):
            clients.append(children.start(rps_client, target))
        for _, pipe in clients:
            kind, error = children.receive(pipe, target.name, START_TIMEOUT_S + EXTRA_WAIT_S)
            if kind == "error":
                raise BenchError(f"{target.name}: a client could not start: {error}")
        t_start = time.monotonic() + opts.warmup
        t_end = t_start + opts.duration
        for _, pipe in clients:
            pipe.send((t_start, t_end))
        time.sleep(max(0.0, t_start - time.monotonic()))
        proxy_cpu0 = tree_cpu_s(peer.proc.pid) if peer else 0.0
        origin_cpu0, host0 = tree_cpu_s(origin_pid), host_busy_s()
        time.sleep(max(0.0, t_end - time.monotonic()))
        proxy_cpu = tree_cpu_s(peer.proc.pid) - proxy_cpu0 if peer else 0.0
        origin_cpu, host = tree_cpu_s(origin_pid) - origin_cpu0, host_busy_s() - host0
        results = [children.receive(pipe, target.name, EXTRA_WAIT_S)[1] for _, pipe in clients]
    finally:
        for proc, _ in clients:
            children.stop(proc)
    latencies = array.array("d")
    for r in results:
        latencies.frombytes(r["latencies"])
    latencies = sorted(latencies)
    n = len(latencies)
    errors = sum(r["errors"] for r in results)
    return {"requests": n, "rps": n / opts.duration, "errors": errors,
            "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
            "p50_ms": 1e3 * percentile(latencies, 50), "p99_ms": 1e3 * percentile(latencies, 99),
            "proxy_cpu_us_per_req": 1e6 * proxy_cpu / max(1, n) if peer else None,
            "proxy_cores": proxy_cpu / opts.duration if peer else None,
            "client_cores": sum(r["cpu_s"] for r in results) / opts.duration,
            "origin_cores": origin_cpu / opts.duration, "host_cores": host / opts.duration}


class NewConnections:
    """Sequential new connections, each timed from connect() to the end of the first response:
    full handshakes, then handshakes resuming the previous connection's session. Runs in blocks
    so the rows can take turns and share the host's noise."""

    def __init__(self, target, peer):
        self.target, self.peer, self.context = target, peer, target.context()
        self.full, self.resumed, self.cpu_s, self.reused = [], [], 0.0, 0
        self.session = None
        for _ in range(5):  # warm-up: the proxy's leaf for this host is cached from here on
            tls = target.connect(self.context)
            target.exchange(tls)
            self.session = tls.session
            tls.close()

    def block(self, count):
        cpu0 = tree_cpu_s(self.peer.proc.pid) if self.peer else 0.0
        for _ in range(count):
            t0 = time.perf_counter()
            tls = self.target.connect(self.context)
            self.target.exchange(tls)
            self.full.append(time.perf_counter() - t0)
            tls.close()
        if self.peer:
            self.cpu_s += tree_cpu_s(self.peer.proc.pid) - cpu0
        for _ in range(count):
            t0 = time.perf_counter()
            tls = self.target.connect(self.context, self.session)
            self.target.exchange(tls)
            self.resumed.append(time.perf_counter() - t0)
            self.reused += tls.session_reused
            self.session = tls.session  # TLS 1.3 tickets arrive with the response
            tls.close()

    def result(self):
        full, resumed = sorted(self.full), sorted(self.resumed)
        return {"p50_ms": 1e3 * percentile(full, 50), "p99_ms": 1e3 * percentile(full, 99),
                "proxy_cpu_us_per_conn": 1e6 * self.cpu_s / len(full) if self.peer else None,
                "resumed_p50_ms": 1e3 * percentile(resumed, 50),
                "resumed_fraction": self.reused / max(1, len(resumed))}


def measure_keepalive(target, requests):
    """One client, one connection, sequential requests: latency without queueing."""
    tls = target.connect(target.context())
    try:
        buf = b""
        for _ in range(min(200, requests)):
            buf = target.exchange(tls, buf)
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            buf = target.exchange(tls, buf)
            times.append(time.perf_counter() - t0)
    finally:
        tls.close()
    times.sort()
    return {"p50_us": 1e6 * percentile(times, 50), "p99_us": 1e6 * percentile(times, 99)}


# Report -----------------------------------------------------------------------------------------

def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def other_cores(a):
    """Host CPU not spent by this benchmark's client, origin or proxy (other work: noise)."""
    return max(0.0, a["host_cores"] - a["client_cores"] - a["origin_cores"] -
               (a["proxy_cores"] or 0.0))


def build_report(names, res, opts, notes):
    out = [f"### TLS interception benchmark ({opts.clients} keep-alive clients, "
           f"{opts.duration:g} s after {opts.warmup:g} s warm-up; {opts.samples} new connections; "
           f"{opts.conns} idle connections; {BODY_BYTES} B body; {os.cpu_count()} CPUs, "
           f"load average {opts.loadavg:.2f} at start, {os.getloadavg()[0]:.2f} at end)\n"]
    dash = "—"

    rows = []
    for name in names:
        r = res[name]
        if r.get("failed"):
            rows.append([name, r["failed"]] + [dash] * 9)
            continue
        a = r["rps"]
        rows.append([name, r["tls"], fmt(a["rps"]), str(a["errors"]), fmt(a["p50_ms"], 2),
                     fmt(a["p99_ms"], 2),
                     fmt(a["proxy_cpu_us_per_req"]) if a["proxy_cpu_us_per_req"] else dash,
                     fmt(a["proxy_cores"], 2) if a["proxy_cores"] is not None else dash,
                     fmt(a["client_cores"], 2), fmt(a["origin_cores"], 2),
                     fmt(other_cores(a), 2)])
    out.append("(a) keep-alive requests/s (cores = CPU seconds per second in the measured "
               "window; the client and origin share the host with the proxy)\n")
    out += table(["row", "client ↔ proxy TLS", "req/s", "errors", "p50 ms", "p99 ms",
                  "proxy CPU µs/req", "proxy cores", "client cores", "origin cores",
                  "other load cores"], rows)

    rows = []
    direct = res.get("direct", {})

    def minus_direct(name, group, key):
        if name == "direct" or group not in direct:
            return dash
        return fmt(res[name][group][key] - direct[group][key], 0 if key.endswith("us") else 2)

    for name in names:
        r = res[name]
        if "first" not in r or "keepalive" not in r:
            continue
        b, k = r["first"], r["keepalive"]
        resumed = fmt(b["resumed_p50_ms"], 2)
        if b["resumed_fraction"] < 0.99:
            resumed += f" ({100 * b['resumed_fraction']:.0f} % resumed)"
        rows.append([name, r["kex"], fmt(b["p50_ms"], 2), fmt(b["p99_ms"], 2),
                     minus_direct(name, "first", "p50_ms"),
                     minus_direct(name, "first", "p99_ms"),
                     fmt(b["proxy_cpu_us_per_conn"]) if b["proxy_cpu_us_per_conn"] else dash,
                     resumed, minus_direct(name, "first", "resumed_p50_ms"),
                     fmt(k["p50_us"]), minus_direct(name, "keepalive", "p50_us")])
    out.append(f"\n(b) first request on a new connection: connect + CONNECT + TLS handshake + "
               f"GET, {opts.samples} sequential per row with the rows taking turns, leaf cached; "
               f"full handshakes, then as many resuming the previous session. Keep-alive: one "
               f"client, {opts.keepalive_requests} sequential requests on one connection\n")
    out += table(["row", "ECDHE group", "first p50 ms", "first p99 ms", "added p50 ms",
                  "added p99 ms", "proxy CPU µs/new conn", "resumed p50 ms",
                  "resumed added p50 ms", "keep-alive p50 µs", "keep-alive added p50 µs"], rows)

    rows = []
    for name in names:
        m = res[name].get("idle")
        if not m:
            continue
        alive = "" if m["alive"] == opts.conns else f" ({m['alive']} alive)"
        rows.append([name, fmt(m["rss_idle_kib"] / 1024, 1), fmt(m["rss_conns_kib"] / 1024, 1),
                     fmt(m["kib_per_conn"], 1) + alive])
    out.append(f"\n(c) memory: proxy VmRSS (process tree) before and with {opts.conns} idle "
               "connections, each after one request\n")
    out += table(["row", "idle RSS MiB", f"RSS {opts.conns} conns MiB", "KiB/conn"], rows)

    # Targets
    me, mitm = res.get("openshell-intercept", {}), res.get("mitmproxy", {})
    ok_me, ok_mitm = "rps" in me, "rps" in mitm
    rps_ratio = me["rps"]["rps"] / mitm["rps"]["rps"] if ok_me and ok_mitm else None
    cpu_ratio = (mitm["rps"]["proxy_cpu_us_per_req"] / me["rps"]["proxy_cpu_us_per_req"]
                 if ok_me and ok_mitm else None)
    added = (me["first"]["p50_ms"] - direct["first"]["p50_ms"]
             if ok_me and "first" in direct else None)
    kib = me["idle"]["kib_per_conn"] if "idle" in me else None
    alive_ok = "idle" in me and me["idle"]["alive"] == opts.conns
    rows = [
        [f"intercepting req/s ≥ {TARGET_RPS_RATIO:g}× mitmproxy's",
         f"{fmt(rps_ratio, 2)}× (proxy CPU per request: {fmt(cpu_ratio, 1)}× less)",
         verdict(None if rps_ratio is None else rps_ratio >= TARGET_RPS_RATIO)],
        [f"first request, new connection, cached leaf: added p50 ≤ "
         f"{TARGET_ADDED_FIRST_P50_MS:g} ms", f"{fmt(added, 2)} ms",
         verdict(None if added is None else added <= TARGET_ADDED_FIRST_P50_MS)],
        [f"≤ {TARGET_KIB_PER_CONN:g} KiB per intercepted idle connection",
         f"{fmt(kib, 1)} KiB" + ("" if alive_ok or kib is None else " (not all alive)"),
         verdict(None if kib is None else kib <= TARGET_KIB_PER_CONN and alive_ok)],
    ]
    out.append("\nTargets (openshell intercepting):\n")
    out += table(["target", "measured", "result"], rows)

    noise = max((other_cores(res[n]["rps"]) for n in names if "rps" in res[n]), default=0.0)
    if noise >= 0.25:
        notes.append(f"other processes on the host used up to {noise:.2f} cores during (a): "
                     "req/s and latencies are disturbed, CPU µs per request much less so.")
    if ok_me and ok_mitm:
        a = me["rps"]
        cores = os.cpu_count() or 1
        if a["host_cores"] >= 0.8 * cores and a["proxy_cores"] < 0.9:
            notes.append(
                f"openshell-intercept's req/s is bounded by the host, not by openshell: clients "
                f"{a['client_cores']:.2f} + origin {a['origin_cores']:.2f} + openshell "
                f"{a['proxy_cores']:.2f} + other {other_cores(a):.2f} cores of {cores} were "
                f"busy. Compare proxies by CPU µs per request "
                f"(openshell {a['proxy_cpu_us_per_req']:.0f}, mitmproxy "
                f"{mitm['rps']['proxy_cpu_us_per_req']:.0f}); the req/s ratio understates the "
                "difference.")
    return "\n".join(out)


def benchmark(opts, procs, children, tmp):
    origin_ca, origin_cert, origin_key = make_pki(tmp / "pki")
    origin_proc, origin_port = start_origin(procs, tmp, origin_cert, origin_key,
                                            opts.origin_workers)
    log(f"origin on 127.0.0.1:{origin_port} ({opts.origin_workers} workers)")

    res, notes, peers = {}, [], {"direct": None}
    starters = {
        "openshell-tunnel": lambda: start_openshell(procs, tmp, "openshell-tunnel",
                                                    opts.openshell, origin_port, origin_ca,
                                                    False, opts.openshell_arg),
        "openshell-intercept": lambda: start_openshell(procs, tmp, "openshell-intercept",
                                                       opts.openshell, origin_port, origin_ca,
                                                       True, opts.openshell_arg),
        "mitmproxy": lambda: start_mitmproxy(procs, tmp, origin_ca),
    }
    missing_openshell = openshell_missing(opts.openshell)
    for name in ROWS[1:]:
        if name not in opts.only:
            continue
        missing = (missing_openshell if name.startswith("openshell")
                   else None if shutil.which("mitmdump") else "mitmdump is not installed")
        if missing:
            notes.append(f"{name} skipped: {missing}")
            continue
        try:
            peers[name] = starters[name]()
            log(f"{name} listening on 127.0.0.1:{peers[name].port}")
        except BenchError as e:
            notes.append(f"{name} not benchmarked: {e}")
            res[name] = {"failed": str(e)}

    targets = {}
    for name, peer in list(peers.items()):
        target = Target(name, origin_port, peer.port if peer else None,
                        peer.cafile if peer else origin_ca, opts.client_curve)
        try:
            tls = smoke(target)
        except (OSError, ssl.SSLError) as e:
            notes.append(f"{name} failed the smoke test (2 requests, client trusting "
                         f"{Path(target.cafile).name}): {e!r}")
            res[name] = {"failed": "smoke test failed"}
            del peers[name]
            continue
        res[name] = {"tls": tls, "kex": key_exchange(target)}
        targets[name] = target
        log(f"{name}: smoke test ok ({tls}, key exchange {res[name]['kex']})")
    if "direct" not in targets:
        raise BenchError("the origin does not answer directly; nothing to compare with")
    time.sleep(SETTLE_S)

    def run(label, fn, store=True):
        for name, target in list(targets.items()):
            if store:
                log(f"{label}: {name}")
            try:
                value = fn(target, peers[name])
                if store:
                    res[name][label] = value
            except (BenchError, OSError, ssl.SSLError) as e:
                notes.append(f"{name} dropped during {label}: {e!r}")
                res[name] = {"failed": f"failed during {label}"}
                del targets[name]

    # (c) first, so the idle RSS is the freshly started proxy.
    for name, target in list(targets.items()):
        if peers[name] is None:
            continue
        log(f"idle: {opts.conns} connections through {name}")
        try:
            res[name]["idle"] = measure_idle(children, target, peers[name], opts.conns)
        except BenchError as e:
            notes.append(f"{name}: idle connections failed: {e}")
    run("rps", lambda t, p: measure_rps(children, t, p, origin_proc.pid, opts))
    # (b) in blocks, the rows taking turns.
    log(f"first request on new connections: {opts.samples} per row, in {NEW_CONN_BLOCKS} turns")
    runs = {}
    run("first", lambda t, p: runs.setdefault(t.name, NewConnections(t, p)), store=False)
    for turn in range(NEW_CONN_BLOCKS):
        count = opts.samples // NEW_CONN_BLOCKS + (turn < opts.samples % NEW_CONN_BLOCKS)
        run("first", lambda t, p: runs[t.name].block(count), store=False)
    run("first", lambda t, p: runs[t.name].result())
    run("keepalive", lambda t, p: measure_keepalive(t, opts.keepalive_requests))

    for name, peer in peers.items():
        if peer and peer.proc.poll() is not None:
            notes.append(f"{name} exited during the run (rc {peer.proc.returncode})")
    for name in targets:
        r = res[name]
        if r.get("rps", {}).get("errors"):
            notes.append(f"{name}: errors under load, first: {r['rps']['first_error']}")
        if r.get("idle", {}).get("first_error"):
            notes.append(f"{name}: idle connections, first error: {r['idle']['first_error']}")
    names = [n for n in ROWS if n in res]
    return build_report(names, res, opts, notes), notes, res


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=None,
                    help="meson build dir holding openshell (default build/release)")
    ap.add_argument("--openshell", type=Path,
                    help="openshell binary (default BUILD/openshell, else BUILD/src/cli/openshell)")
    ap.add_argument("--only", default=",".join(ROWS[1:]),
                    help="comma-separated rows besides direct (which always runs)")
    ap.add_argument("--quick", action="store_true",
                    help="short smoke run: 2 s load, 50 new connections, 100 idle connections")
    ap.add_argument("--clients", type=int, default=8,
                    help="keep-alive client processes, one connection each")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds of (a)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before (a)")
    ap.add_argument("--samples", type=int, default=300, help="new connections timed in (b)")
    ap.add_argument("--keepalive-requests", type=int, default=2000,
                    help="sequential keep-alive requests timed in (b)")
    ap.add_argument("--conns", type=int, default=500, help="idle connections in (c)")
    ap.add_argument("--client-curve", metavar="NAME",
                    help="clients offer only this ECDHE group (e.g. prime256v1); default: "
                         "OpenSSL's list (X25519, P-256, X448, P-521, P-384)")
    ap.add_argument("--origin-workers", type=int, default=os.cpu_count() or 2,
                    help="origin processes")
    ap.add_argument("--openshell-arg", action="append", default=[],
                    help="extra argument for 'openshell proxy' (repeatable; write "
                         "--openshell-arg=-x for one starting with -)")
    ap.add_argument("--json", type=Path, help="also write raw results here")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the PKI, configs and logs")
    opts = ap.parse_args()
    if opts.quick:
        opts.duration, opts.warmup = 2.0, 0.5
        opts.samples, opts.keepalive_requests, opts.conns = 50, 300, 100
    opts.build = Path(opts.build) if opts.build else REPO_ROOT / "build" / "release"
    opts.build = opts.build.resolve()
    if not opts.openshell:
        candidates = [opts.build / "openshell", opts.build / "src" / "cli" / "openshell"]
        opts.openshell = next((c for c in candidates if c.is_file()), candidates[0])
    opts.openshell = opts.openshell.resolve()
    opts.only = set(opts.only.split(","))
    return opts


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "origin":
        return origin_main(sys.argv[2:])
    opts = parse_args()
    if not shutil.which("openssl"):
        sys.exit("tls_bench: the openssl CLI is needed for the test PKI")
    # Each idle connection costs the client one fd, a proxy two and the origin one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * opts.conns + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * opts.conns + 256:
        sys.exit(f"tls_bench: open-file limit {hard} is too low for {opts.conns} connections")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, raise_on_signal)

    opts.loadavg = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="openshell-tls-bench-"))
    procs, children, ok = Processes(), Children(), False
    try:
        report, notes, res = benchmark(opts, procs, children, tmp)
        print(report)
        for note in notes:
            print(f"\nNote: {note}")
        print("\nRows: " + "; ".join(f"{n} = {ROW_HELP[n]}" for n in ROWS))
        if opts.json:
            opts.json.write_text(json.dumps(res, indent=2, default=str))
        ok = True
    except BenchError as e:
        log(f"failed: {e}")
    finally:
        children.stop_all()
        procs.stop_all()
        if opts.keep_tmp:
            log(f"PKI, configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if not ok:
                log("run again with --keep-tmp to keep the configs and logs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
