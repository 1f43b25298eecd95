"""Shared helpers for the `openshell proxy` integration tests (test_proxy.py).

Everything a test starts lives inside a `Lab`: a fresh network namespace holding only `lo` (plus
the test hosts a test adds to it), a temp dir, the proxy and the local origins. The test thread
itself is moved into the namespace (unshare(CLONE_NEWNET) for the calling thread), so its raw
sockets, the origin threads it starts and the clients it spawns (curl, the proxy) all live there;
nothing any test does can reach a non-loopback address on the machine or beyond, even if the
proxy's SSRF guard were broken. The proxy additionally gets a private mount namespace whose
/etc/hosts names the test hosts and whose /etc/resolv.conf points at a nameserver that does not
exist (127.0.0.1:53 inside the namespace), so DNS lookups fail fast and locally.

Every wait is bounded; `Lab.__exit__` stops every process and server it started and returns the
thread to the original namespace, also when the test failed.
"""
import atexit
import ctypes
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from tap import BIN

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

HOSTS = """127.0.0.1 localhost origin.test other.test l7.test
::1 localhost
10.99.0.1 private.test
10.99.0.2 blackhole.test
"""
RESOLV = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

_CERT_DIR = None


# Runs a command as nobody, with no supplementary groups (rootless sandboxes).
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def rootless_binary(base_dir):
    """The binary as nobody can run it: the build tree may sit under a 0700 home, so a copy in
    `base_dir` (which nobody can traverse) is made when needed."""
    if subprocess.run([*AS_NOBODY, "test", "-x", BIN], timeout=10).returncode == 0:
        return BIN
    directory = os.path.join(base_dir, "bin")
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    copy = os.path.join(directory, "openshell")
    shutil.copy2(BIN, copy)
    os.chmod(copy, 0o755)
    return copy


def _netns_inode():
    return os.stat("/proc/thread-self/ns/net").st_ino


def tls_files():
    """A throwaway self-signed cert for CN=localhost (SAN localhost, 127.0.0.1), made once."""
    global _CERT_DIR
    if _CERT_DIR is None:
        directory = tempfile.mkdtemp(prefix="openshell-proxy-cert-")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", os.path.join(directory, "key.pem"),
             "-out", os.path.join(directory, "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=30)
        _CERT_DIR = directory
    return os.path.join(_CERT_DIR, "cert.pem"), os.path.join(_CERT_DIR, "key.pem")


def cleanup_tls_files():
    if _CERT_DIR is not None:
        shutil.rmtree(_CERT_DIR, ignore_errors=True)


atexit.register(cleanup_tls_files)


# --------------------------------------------------------------------------------------------
# HTTP parsing on the client side


class Response:
    """One parsed HTTP/1.1 response (status, headers, body) and the raw bytes it came from."""

    def __init__(self, raw):
        self.raw = raw
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"no complete response head in {raw[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest_line = lines[0].partition(" ")
        code, _, reason = rest_line.partition(" ")
        assert version.startswith("HTTP/1."), lines[0]
        self.status = int(code)
        self.reason = reason
        self.headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon, f"bad header line {line!r}"
            self.headers.append((name.strip().lower(), value.strip()))
        self.body = rest

    def header(self, name):
        values = [v for n, v in self.headers if n == name.lower()]
        assert len(values) <= 1, f"header {name} repeated: {values}"
        return values[0] if values else None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"Response({self.raw[:600]!r})"


def recv_until_close(sock, timeout=5.0):
    """All bytes until the peer closes; AssertionError if it stays open past `timeout`."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"peer did not close within {timeout}s; "
                                 f"got {b''.join(chunks)[:300]!r}")
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"peer did not close within {timeout}s; "
                                 f"got {b''.join(chunks)[:300]!r}")
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock, timeout=5.0, head_request=False):
    """Reads exactly one response (Content-Length, chunked, or until close) off a keep-alive
    connection; `Response.body` is the body as sent (chunk framing kept), `decoded` without it."""
    sock.settimeout(timeout)
    buffer = bytearray()

    def fill():
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {bytes(buffer)[:300]!r}")
        buffer.extend(chunk)

    while b"\r\n\r\n" not in buffer:
        fill()
    head_end = buffer.index(b"\r\n\r\n") + 4
    probe = Response(bytes(buffer[:head_end]))
    length = probe.header("content-length")
    if head_request or probe.status in (204, 304) or 100 <= probe.status < 200:
        end = head_end
        decoded = b""
    elif (probe.header("transfer-encoding") or "").lower() == "chunked":
        position, decoded = head_end, b""
        while True:
            while b"\r\n" not in buffer[position:]:
                fill()
            line_end = buffer.index(b"\r\n", position)
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2
            if size == 0:
                while b"\r\n" not in buffer[position:]:
                    fill()
                position = buffer.index(b"\r\n", position) + 2  # no trailers expected
                break
            while len(buffer) < position + size + 2:
                fill()
            decoded += bytes(buffer[position:position + size])
            assert buffer[position + size:position + size + 2] == b"\r\n", bytes(buffer)
            position += size + 2
        end = position
    elif length is not None:
        end = head_end + int(length)
        while len(buffer) < end:
            fill()
        decoded = bytes(buffer[head_end:end])
    else:
        buffer.extend(recv_until_close(sock, timeout))
        end = len(buffer)
        decoded = bytes(buffer[head_end:])
    assert len(buffer) == end, f"bytes after the response: {bytes(buffer[end:])[:200]!r}"
    response = Response(bytes(buffer))
    response.decoded = decoded
    return response


def exchange(port, data, timeout=5.0, host="127.0.0.1"):
    """Sends `data` to the proxy and returns everything it answers until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return recv_until_close(sock, timeout)


def request(port, data, timeout=5.0):
    """`exchange` whose answer must be one complete HTTP response followed by the close."""
    raw = exchange(port, data, timeout)
    assert raw, "proxy closed without answering"
    response = Response(raw)
    length = response.header("content-length")
    if data.startswith(b"HEAD "):
        assert response.body == b"", f"a body after a HEAD response: {raw!r}"
    elif length is not None:
        assert len(response.body) == int(length), \
            f"Content-Length {length} but {len(response.body)} body bytes: {raw!r}"
    return response


def assert_json_error(response, status, body):
    """A proxy-generated JSON answer (spec §9): exact status, body, and the fixed headers."""
    assert response.status == status, (status, response)
    assert response.header("content-type") == "application/json", response
    assert response.header("content-length") == str(len(response.body)), response
    assert response.header("connection") == "close", response
    assert response.json() == body, (response.json(), body)


def connect_request(host_port):
    return f"CONNECT {host_port} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode()


def forward_request(method, url, host, extra="", body=b""):
    head = f"{method} {url} HTTP/1.1\r\nHost: {host}\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + body


def open_tunnel(proxy_port, host_port, timeout=5.0):
    """A socket through which the proxy tunnels to `host_port` (asserts the 200)."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    try:
        sock.sendall(connect_request(host_port))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"proxy closed the CONNECT: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head == b"HTTP/1.1 200 Connection Established", data
        assert rest == b"", data
        return sock
    except BaseException:
        sock.close()
        raise


def closed_port(host="127.0.0.1"):
    """A port nothing listens on (bound then released; nothing else runs in the namespace)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Origins


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    return out + b"<malformed chunk: " + line + b">"
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def _answer(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        body = self._body()
        origin = self.server.origin
        record = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                  "header_list": list(self.headers.items()), "body": body}
        with origin.lock:
            origin.requests.append(record)
        if self.path.startswith("/slow"):
            origin.slow_started.set()
            time.sleep(1.0)
            self._answer(b"slow response complete\n" + b"x" * 4096)
            return
        if self.path.startswith("/chunked-response"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"chunked ", b"response ", b"from origin\n"):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.command in ("POST", "PUT", "PATCH"):
            self._answer(body)
            return
        self._answer(f"origin {origin.name} {self.command} {self.path}\n".encode())

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client (the proxy) that hangs up mid-answer is expected in several tests; keep the
        # TAP stream's stderr quiet and remember it for debugging.
        import sys
        self.origin.errors.append(repr(sys.exc_info()[1]))


class Origin:
    """A local HTTP (or HTTPS) origin in a thread; records every request it receives."""

    def __init__(self, host="127.0.0.1", port=0, tls=False, name="o"):
        self.name = name
        self.requests = []
        self.errors = []
        self.lock = threading.Lock()
        self.slow_started = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("S", (_Server,), {"address_family": family})
        self.server = server_class((host, port), _OriginHandler)
        self.server.origin = self
        if tls:
            cert, key = tls_files()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def request_count(self):
        with self.lock:
            return len(self.requests)


# --------------------------------------------------------------------------------------------
# The proxy


class Proxy:
    """`openshell proxy` on 127.0.0.1:<ephemeral>, JSON logs on stderr captured to a file."""

    def __init__(self, lab, policy=None, args=(), startup_timeout=10.0, listen=("127.0.0.1:0",)):
        self.lab = lab
        self.log_path = os.path.join(lab.dir, f"proxy-{len(lab.proxies)}.log")
        self.log_file = open(self.log_path, "wb")
        argv = [BIN, "proxy", "--log-format", "json"]
        for address in listen:
            argv += ["--listen", address]
        if policy is not None:
            argv += ["--policy", policy]
        argv += list(args)
        # The proxy's own mount namespace: private /etc/hosts and /etc/resolv.conf.
        wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 '
                   '&& exec "$@"', "sh", lab.hosts_path, lab.resolv_path]
        self.process = subprocess.Popen(wrapper + argv, stdin=subprocess.DEVNULL,
                                        stdout=self.log_file, stderr=self.log_file)
        lab.proxies.append(self)
        self.wait_for(lambda e: "listen" in e.get("unmapped", {}), startup_timeout, "listen event")
        deadline = time.monotonic() + startup_timeout
        while True:
            self.addresses = [e["unmapped"]["listen"] for e in self.events()
                              if "listen" in e.get("unmapped", {})]
            if len(self.addresses) >= len(listen):
                break
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.02)
        self.port = int(self.addresses[0].rsplit(":", 1)[1])

    # Logs --------------------------------------------------------------------------------------
    def log_text(self):
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def log_lines(self):
        return [line for line in self.log_text().splitlines() if line.strip()]

    def non_json_lines(self):
        out = []
        for line in self.log_lines():
            try:
                json.loads(line)
            except ValueError:
                out.append(line)
        return out

    def events(self):
        out = []
        for line in self.log_lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for(self, predicate, timeout=5.0, what="log event"):
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events():
                if predicate(event):
                    return event
            if self.process.poll() is not None:
                # One last look: the event may have been written just before the exit.
                for event in self.events():
                    if predicate(event):
                        return event
                raise AssertionError(f"proxy exited ({self.process.returncode}) before {what}:\n"
                                     + self.log_text()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout}s:\n" + self.log_text()[-3000:])
            time.sleep(0.02)

    def wait_message(self, fragment, timeout=5.0):
        return self.wait_for(lambda e: fragment in e.get("message", ""), timeout, repr(fragment))

    # Lifecycle ---------------------------------------------------------------------------------
    def signal(self, number):
        self.process.send_signal(number)

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_file.close()
        return self.process.returncode


# --------------------------------------------------------------------------------------------
# The lab: namespace + temp dir + everything started in it


class Lab:
    def __init__(self):
        self.dir = None
        self.proxies = []
        self.origins = []
        self.sockets = []
        self._original_ns = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="openshell-proxy-test-")
        self.hosts_path = self.write("hosts", HOSTS)
        self.resolv_path = self.write("resolv.conf", RESOLV)
        self._original_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._original_inode = _netns_inode()
        if _libc.unshare(CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            os.close(self._original_ns)
            raise OSError(error, "unshare(CLONE_NEWNET): " + os.strerror(error))
        try:
            assert _netns_inode() != self._original_inode
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self._leave_namespace()
            raise
        return self

    def __exit__(self, exc_type, exc, traceback):
        problems = []
        try:
            for sock in self.sockets:
                try:
                    sock.close()
                except OSError:
                    pass
            for proxy in self.proxies:
                code = proxy.stop()
                # Every proxy must drain and exit 0 on SIGTERM, and never print a sanitizer or
                # crash report (the suite also runs against the ASan/UBSan build).
                if code != 0:
                    problems.append(f"proxy exited {code} after SIGTERM (negative: killed by "
                                    f"that signal); log tail:\n{proxy.log_text()[-3000:]}")
                text = proxy.log_text()
                for marker in ("Sanitizer", "runtime error:", "terminate called", "Segmentation"):
                    if marker in text:
                        problems.append(f"proxy log contains {marker!r}:\n{text[-4000:]}")
            for origin in self.origins:
                origin.stop()
        finally:
            self._leave_namespace()
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            # Raised also when the test already failed: the traceback then shows both, and a
            # crashed proxy explains the test's own failure.
            raise AssertionError("\n".join(problems))
        return False

    def _leave_namespace(self):
        if self._original_ns is None:
            return
        if _libc.setns(self._original_ns, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, "setns back to the original network namespace failed")
        os.close(self._original_ns)
        self._original_ns = None
        assert _netns_inode() == self._original_inode

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def ip(self, *args):
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    def add_test_host(self, cidr="10.99.0.1/24"):
        """A veth pair inside the namespace carrying `cidr` (a private test host we own)."""
        self.ip("link", "add", "osveth0", "type", "veth", "peer", "name", "osveth1")
        self.ip("addr", "add", cidr, "dev", "osveth0")
        self.ip("link", "set", "osveth0", "up")
        self.ip("link", "set", "osveth1", "up")

    def origin(self, host="127.0.0.1", tls=False, name="o"):
        origin = Origin(host, tls=tls, name=name)
        self.origins.append(origin)
        return origin

    def proxy(self, policy_text=None, args=(), policy_name="policy.yaml", listen=("127.0.0.1:0",)):
        policy = self.write(policy_name, policy_text) if policy_text is not None else None
        return Proxy(self, policy, args, listen=listen)

    def track(self, sock):
        self.sockets.append(sock)
        return sock


def curl(*args, timeout=20):
    """curl with no proxy settings from the environment."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          timeout=timeout, env=env)


def policy_yaml(policies):
    """{key: [endpoint dict, ...]} -> a policy document (YAML with JSON flow mappings)."""
    lines = ["version: 1", "network_policies:"]
    for key, endpoints in policies.items():
        lines += [f"  {key}:", "    endpoints:"]
        lines += [f"      - {json.dumps(endpoint)}" for endpoint in endpoints]
    return "\n".join(lines) + "\n"
