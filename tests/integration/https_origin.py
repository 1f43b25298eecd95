#!/usr/bin/env python3
"""A test origin for the TLS integration tests (test_tls.py): HTTP/1.1 with keep-alive over TLS
(1.2 or 1.3; the proxy's upstream client speaks 1.2) or plain TCP, Python stdlib only.

    https_origin.py --listen 127.0.0.2 [--port 0] [--cert C --key K] [--name N] [--log FILE]

prints `ready PORT` once listening and appends one JSON line per event to --log, flushed at once:
`{"event": "request", ...}` for every request head it receives (before the body is read, so a
request that reached the origin is always recorded), `{"event": "tls_error", ...}` for a failed
handshake. Routes (any method):
  /echo           200 JSON: method, target, path, query, headers, body_length, body_sha256, name,
                  and the TLS version, SNI and ALPN the client used (null in plain mode)
  /chunked        200 chunked response body (CHUNKED_BODY)
  /close          200 without Content-Length, delimited by the close (CLOSE_BODY)
  /ws             101 to `Upgrade: websocket`, then echoes raw bytes until EOF
  /big?n=BYTES    200 with `big_body(n)`
  anything else   the same as /echo
Request bodies may use Content-Length or chunked framing; `Expect: 100-continue` is answered.

`OriginProcess` starts this script as a child process (in the caller's network namespace) and
reads its log.
"""
import argparse
import base64
import hashlib
import json
import os
import selectors
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

CHUNKED_BODY = b"chunked response body from the origin\n"
CLOSE_BODY = b"body delimited by the close of the connection\n" * 100
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
IO_TIMEOUT = 30  # seconds a connection may stay silent before the origin drops it
MAX_HEAD = 65536


def big_body(n):
    """Deterministic, non-repeating-per-KiB content so truncation or reordering shows."""
    block = bytes(range(251)) * 5
    out = bytearray()
    while len(out) < n:
        out += len(out).to_bytes(8, "big") + block
    return bytes(out[:n])


class BadRequest(Exception):
    pass


class Handler(socketserver.StreamRequestHandler):
    def setup(self):
        self.request.settimeout(IO_TIMEOUT)
        self.tls_info = {"tls": None, "sni": None, "alpn": None}
        if self.server.tls_context is not None:
            try:
                self.request = self.server.tls_context.wrap_socket(self.request, server_side=True)
            except (OSError, ssl.SSLError) as error:
                self.server.record({"event": "tls_error", "error": str(error)})
                self.request = None
                return
            self.tls_info = {"tls": self.request.version(),
                             "sni": getattr(self.request, "sni_name", None),
                             "alpn": self.request.selected_alpn_protocol()}
        super().setup()

    def handle(self):
        if self.request is None:
            return
        try:
            while self.handle_one():
                pass
        except (OSError, BadRequest, ValueError) as error:
            self.server.record({"event": "error", "error": repr(error)})

    def finish(self):
        if self.request is None:
            return
        try:
            super().finish()
        except OSError:
            pass
        self.request.close()

    # Reading -----------------------------------------------------------------------------------
    def read_head(self):
        line = self.rfile.readline(MAX_HEAD)
        if not line:
            return None
        if not line.endswith(b"\r\n"):
            raise BadRequest(f"bad request line {line[:200]!r}")
        method, target, version = line[:-2].decode("latin-1").split(" ")
        headers = []
        while True:
            field = self.rfile.readline(MAX_HEAD)
            if field in (b"\r\n", b""):
                break
            name, colon, value = field.decode("latin-1").partition(":")
            if not colon:
                raise BadRequest(f"bad header line {field[:200]!r}")
            headers.append((name.strip().lower(), value.strip()))
        return method, target, version, headers

    def read_body(self, headers):
        fields = dict(headers)
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline(MAX_HEAD).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(MAX_HEAD) not in (b"\r\n", b""):
                        pass  # trailers
                    return bytes(body)
                body += self.rfile.read(size)
                if self.rfile.read(2) != b"\r\n":
                    raise BadRequest("chunk not followed by CRLF")
        if "transfer-encoding" in fields:
            raise BadRequest("unsupported Transfer-Encoding")
        return self.rfile.read(int(fields.get("content-length", "0")))

    # Writing -----------------------------------------------------------------------------------
    def send(self, status, reason, headers, body=b""):
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)
        self.wfile.flush()

    def close_write(self):
        """Ends an EOF-delimited response: TLS close_notify (waiting briefly for the peer's),
        then the TCP FIN."""
        self.wfile.flush()
        sock = self.request
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(1)
                sock = sock.unwrap()
            sock.shutdown(socket.SHUT_WR)
        except (OSError, ssl.SSLError):
            pass

    # One request -------------------------------------------------------------------------------
    def handle_one(self):
        head = self.read_head()
        if head is None:
            return False
        method, target, version, headers = head
        fields = dict(headers)
        url = urlsplit(target)
        self.server.record({"event": "request", "method": method, "target": target,
                            "path": url.path, "query": url.query, "version": version,
                            "headers": fields, "header_list": headers, **self.tls_info})
        if fields.get("expect", "").lower() == "100-continue":
            self.send(100, "Continue", [])
        body = self.read_body(headers)
        keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        bodyless = method == "HEAD"

        if url.path == "/ws" and fields.get("upgrade", "").lower() == "websocket":
            key = fields.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send(101, "Switching Protocols", [("Upgrade", "websocket"),
                                                  ("Connection", "Upgrade"),
                                                  ("Sec-WebSocket-Accept", accept)])
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(data)
            self.close_write()
            return False
        if url.path == "/close":
            self.send(200, "OK", [("Content-Type", "text/plain"), ("Connection", "close")],
                      b"" if bodyless else CLOSE_BODY)
            self.close_write()
            return False
        if url.path == "/chunked":
            self.send(200, "OK", [("Content-Type", "text/plain"),
                                  ("Transfer-Encoding", "chunked")])
            if not bodyless:
                for piece in (CHUNKED_BODY[:7], CHUNKED_BODY[7:20], CHUNKED_BODY[20:]):
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            return keep_alive

        if url.path == "/big":
            content_type = "application/octet-stream"
            answer = big_body(int(parse_qs(url.query).get("n", ["0"])[0]))
        else:
            content_type = "application/json"
            answer = json.dumps({
                "name": self.server.name, "method": method, "target": target, "path": url.path,
                "query": parse_qs(url.query, keep_blank_values=True), "headers": fields,
                "body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
                **self.tls_info}).encode()
        response_headers = [("Content-Type", content_type), ("Content-Length", str(len(answer)))]
        if not keep_alive:
            response_headers.append(("Connection", "close"))
        self.send(200, "OK", response_headers, b"" if bodyless else answer)
        return keep_alive


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # 200 concurrent connections must not overflow the backlog

    def __init__(self, host, port, name, log_path, tls_context):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.name = name
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.lock = threading.Lock()
        self.tls_context = tls_context
        super().__init__((host, port), Handler)

    def record(self, entry):
        if self.log is None:
            return
        entry["time"] = time.time()
        with self.lock:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()

    def handle_error(self, request, client_address):
        self.record({"event": "error", "error": repr(sys.exc_info()[1])})


def tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    # Remembers the SNI the client sent on the socket itself (recorded with each request).
    context.sni_callback = lambda sock, name, _context: setattr(sock, "sni_name", name)
    return context


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", help="PEM certificate (chain); with --key: serve TLS")
    parser.add_argument("--key")
    parser.add_argument("--name", default="o")
    parser.add_argument("--log", help="append one JSON line per request / TLS failure")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    context = tls_context(args.cert, args.key) if args.cert else None
    server = Server(args.listen, args.port, args.name, args.log, context)
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.1)


def exit_with_parent(parent):
    """A test runner killed by its timeout must not leave origins behind."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


# ----------------------------------------------------------------------------------------------
# The launcher used by the tests


class OriginProcess:
    """This script as a child process; `requests()` reads back what reached its HTTP layer."""

    def __init__(self, directory, name, host="127.0.0.1", cert=None, key=None, timeout=10.0):
        self.name = name
        self.host = host
        self.tls = cert is not None
        self.log_path = os.path.join(directory, f"origin-{name}.log")
        self.stderr_path = os.path.join(directory, f"origin-{name}.stderr")
        argv = [sys.executable, os.path.abspath(__file__), "--listen", host, "--name", name,
                "--log", self.log_path]
        if cert:
            argv += ["--cert", cert, "--key", key]
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=stderr)
        try:
            line = self._first_line(timeout)
            if not line.startswith("ready "):
                with open(self.stderr_path, errors="replace") as stderr:
                    raise AssertionError(f"origin {name} did not start: {line!r} "
                                         f"{stderr.read()[-2000:]}")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise

    def _first_line(self, timeout):
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise AssertionError(f"origin {self.name}: no ready line within {timeout}s")
        return self.process.stdout.readline().decode().strip()

    def entries(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.endswith("\n")]

    def requests(self):
        return [e for e in self.entries() if e["event"] == "request"]

    def request_lines(self):
        return [(e["method"], e["target"]) for e in self.requests()]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process.stdout.close()


if __name__ == "__main__":
    main()
