"""Inference routing at `inference.local` end to end (issue 8, proxy-spec §5): the real
`openshell proxy` with --inference-routes (and `ctl set-routes`), curl and python3 clients
(CONNECT + TLS with the proxy's CA, and plain-HTTP forward requests), and fake OpenAI/Anthropic
backends written here (plain HTTP and HTTPS with a test PKI) that record what reaches them and
answer streams as spaced SSE events.

Covers: OpenAI chat completions (buffered and streaming), Anthropic messages (streaming, over an
HTTPS backend), embeddings, models list; the client's Authorization / x-api-key replaced by the
route's key; `model` rewritten; stream chunks reaching the client before the stream ends; no
route → 503; no compatible route → 400; oversized body → 413; non-inference path → 403; the keys
never in the proxy's logs nor in `ctl status`.

Everything runs in a fresh network namespace per test (proxy_fixture.Lab); the backends listen
on 127.0.0.x inside it.
"""
import atexit
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request

import test_pki
from proxy_fixture import Lab, assert_json_error, curl, open_tunnel, read_response
from tap import BIN, main, run, test

OPENAI_KEY = "sk-route-openai-5f3a9c"
ANTHROPIC_KEY = "sk-ant-route-77d1e0"
CLIENT_KEY = "client-supplied-key-123"
BACKEND_NAME = "backend.test"
BACKEND_IP = "127.0.0.5"
EVENT_GAP = 0.4  # seconds between two SSE events of a fake stream

_pki = None


def pki():
    global _pki
    if _pki is None:
        directory = tempfile.mkdtemp(prefix="openshell-inference-pki-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        maker = test_pki.Pki(directory)
        root = maker.ca("root", "OpenShell Inference Test Root")
        _pki = types.SimpleNamespace(root=root,
                                     backend=maker.leaf("backend", [BACKEND_NAME], root))
    return _pki


# ------------------------------------------------------------------------------------------------
# The fake backend


class _BackendHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"<unexpected chunked request>"
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def _json(self, payload, status=200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", "fake")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, events, chunked):
        """SSE events spaced EVENT_GAP apart: chunked, or delimited by the close."""
        backend = self.server.backend
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        for index, event in enumerate(events):
            if index:
                time.sleep(EVENT_GAP)
            data = f"data: {json.dumps(event)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        backend.stream_finished.set()

    def _handle(self):
        backend = self.server.backend
        body = self._read_body()
        record = {"method": self.command, "path": self.path,
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        with backend.lock:
            backend.requests.append(record)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        model = payload.get("model") if isinstance(payload, dict) else None
        path = self.path
        if path.endswith("/models"):
            self._json({"object": "list", "data": [{"id": "backend-model", "object": "model"}]})
        elif path.endswith("/embeddings"):
            self._json({"object": "list", "model": model,
                        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]})
        elif path.endswith("/chat/completions"):
            if payload.get("stream"):
                self._stream([{"choices": [{"delta": {"content": word}}], "model": model}
                              for word in ("Hello", " from", " the backend")] + ["[DONE]"],
                             chunked=True)
            else:
                self._json({"object": "chat.completion", "model": model, "choices": [
                    {"message": {"role": "assistant", "content": "hi there"}}]})
        elif path.endswith("/messages"):
            events = [{"type": "message_start", "message": {"model": model}},
                      {"type": "content_block_delta", "delta": {"text": "Bonjour"}},
                      {"type": "message_stop"}]
            if payload.get("stream"):
                self._stream(events, chunked=False)
            else:
                self._json({"type": "message", "model": model,
                            "content": [{"type": "text", "text": "Bonjour"}]})
        else:
            self._json({"error": "unknown path " + path}, status=404)

    do_GET = do_POST = _handle


class Backend:
    """A fake OpenAI/Anthropic server in a thread on `host`; HTTPS with pki().backend if tls."""

    def __init__(self, host="127.0.0.1", tls=False):
        self.requests = []
        self.lock = threading.Lock()
        self.stream_finished = threading.Event()
        server_class = type("S", (http.server.ThreadingHTTPServer,),
                            {"daemon_threads": True, "allow_reuse_address": True})
        self.server = server_class((host, 0), _BackendHandler)
        self.server.backend = self
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki().backend.cert, pki().backend.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def last(self):
        with self.lock:
            assert self.requests, "the backend received no request"
            return self.requests[-1]

    def count(self):
        with self.lock:
            return len(self.requests)


# ------------------------------------------------------------------------------------------------
# Lab: backends, routes, proxy


class InferenceLab(Lab):
    def __enter__(self):
        super().__enter__()
        with open(self.hosts_path, "a") as hosts:
            hosts.write(f"{BACKEND_IP} {BACKEND_NAME}\n")
        self.backends = []
        return self

    def __exit__(self, *exc):
        for backend in self.backends:
            backend.stop()
        return super().__exit__(*exc)

    def backend(self, host="127.0.0.1", tls=False):
        backend = Backend(host, tls)
        self.backends.append(backend)
        return backend

    def routes_file(self, openai=None, anthropic=None, name="routes.yaml"):
        """openai: a plain-HTTP backend (key inline); anthropic: an HTTPS backend (key from a
        file), by name so the proxy verifies its certificate."""
        lines = ["routes:"]
        if openai is not None:
            lines += ["  - name: local-openai", "    protocol: openai",
                      f"    base_url: http://127.0.0.1:{openai.port}/v1",
                      "    model: routed-gpt", f"    api_key: {OPENAI_KEY}"]
        if anthropic is not None:
            key_file = self.write("anthropic.key", ANTHROPIC_KEY + "\n")
            lines += ["  - name: local-claude", "    protocols: [anthropic]",
                      f"    base_url: https://{BACKEND_NAME}:{anthropic.port}",
                      "    model: routed-claude", f"    api_key_file: {key_file}"]
        return self.write(name, "\n".join(lines) + "\n")

    def inference_proxy(self, routes=None, extra=()):
        index = len(self.proxies)
        ca_out = os.path.join(self.dir, f"proxy-{index}-ca.pem")
        args = ["--ca-out", ca_out, "--upstream-ca", pki().root.cert, *extra]
        if routes is not None:
            args += ["--inference-routes", routes]
        proxy = self.proxy(None, args)
        deadline = time.monotonic() + 5
        while not (os.path.exists(ca_out) and os.path.getsize(ca_out) > 0):
            assert time.monotonic() < deadline, "CA not written"
            time.sleep(0.02)
        proxy.ca = ca_out
        return proxy


def curl_inference(proxy, path, *args, scheme="https"):
    """curl to inference.local through the proxy; returns (http code, body bytes, result)."""
    body_path = os.path.join(proxy.lab.dir, f"curl-{time.monotonic_ns()}.body")
    result = curl("-x", f"http://127.0.0.1:{proxy.port}", "--cacert", proxy.ca, "-o", body_path,
                  "-w", "%{http_code}", *args, f"{scheme}://inference.local{path}")
    body = b""
    if os.path.exists(body_path):
        with open(body_path, "rb") as handle:
            body = handle.read()
    return result.stdout.decode(), body, result


def chat_body(stream=False):
    return json.dumps({"model": "client-model", "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]})


def urllib_opener(proxy):
    context = ssl.create_default_context(cafile=proxy.ca)
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": f"http://127.0.0.1:{proxy.port}",
                                     "http": f"http://127.0.0.1:{proxy.port}"}),
        urllib.request.HTTPSHandler(context=context))


def tls_to_inference(proxy):
    raw = open_tunnel(proxy.port, "inference.local:443")
    context = ssl.create_default_context(cafile=proxy.ca)
    return context.wrap_socket(raw, server_hostname="inference.local")


def sse_data(text):
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def assert_no_keys(proxy, *texts):
    for text in (proxy.log_text(), *texts):
        for key in (OPENAI_KEY, ANTHROPIC_KEY):
            assert key not in text, f"route key {key} leaked: {text[-2000:]}"


# ------------------------------------------------------------------------------------------------
# Tests


@test
def curl_openai_chat_completion_gets_the_routes_key_and_model():
    with InferenceLab() as lab:
        backend = lab.backend()
        proxy = lab.inference_proxy(lab.routes_file(openai=backend))
        code, body, result = curl_inference(
            proxy, "/v1/chat/completions", "-H", f"Authorization: Bearer {CLIENT_KEY}",
            "-H", f"x-api-key: {CLIENT_KEY}", "-H", "Content-Type: application/json",
            "-H", "Cookie: session=1", "--data-binary", chat_body())
        assert code == "200", (code, body, result.stderr)
        answer = json.loads(body)
        assert answer["model"] == "routed-gpt", answer
        received = backend.last()
        assert received["method"] == "POST" and received["path"] == "/v1/chat/completions", received
        headers = received["headers"]
        assert headers["authorization"] == f"Bearer {OPENAI_KEY}", headers
        assert "x-api-key" not in headers and "cookie" not in headers, headers
        assert headers["host"] == f"127.0.0.1:{backend.port}", headers
        assert headers["content-type"] == "application/json", headers
        sent = json.loads(received["body"])
        assert sent["model"] == "routed-gpt" and sent["messages"][0]["content"] == "hi", sent
        assert CLIENT_KEY not in json.dumps(received["headers"])
        event = proxy.wait_for(lambda e: "INFERENCE" in e.get("message", ""), what="event")
        assert event["unmapped"].get("model") == "routed-gpt", event
        assert_no_keys(proxy)


@test
def curl_streaming_chat_completion_relays_every_sse_event():
    with InferenceLab() as lab:
        backend = lab.backend()
        proxy = lab.inference_proxy(lab.routes_file(openai=backend))
        code, body, result = curl_inference(
            proxy, "/v1/chat/completions", "-N", "-H", "Content-Type: application/json",
            "--data-binary", chat_body(stream=True))
        assert code == "200", (code, body, result.stderr)
        events = sse_data(body.decode())
        assert events[-1] == '"[DONE]"', events
        words = [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]]
        assert "".join(words) == "Hello from the backend", events
        assert all(json.loads(e)["model"] == "routed-gpt" for e in events[:-1]), events


@test
def python_stream_chunks_arrive_before_the_stream_ends():
    with InferenceLab() as lab:
        backend = lab.backend()
        proxy = lab.inference_proxy(lab.routes_file(openai=backend))
        sock = lab.track(tls_to_inference(proxy))
        body = chat_body(stream=True).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\n"
                     b"Content-Type: application/json\r\nAuthorization: Bearer " +
                     CLIENT_KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        sock.settimeout(5)
        data = b""
        while b"Hello" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        # The first event is here while the backend is still writing the rest.
        assert not backend.stream_finished.is_set(), "the proxy buffered the stream"
        head = data.split(b"\r\n\r\n")[0].decode().lower()
        assert "transfer-encoding: chunked" in head and "text/event-stream" in head, head
        assert "content-length" not in head, head
        # The rest, then the keep-alive connection serves another request.
        while b"0\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert backend.stream_finished.is_set()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n")
        response = read_response(sock)
        assert response.status == 200 and b"backend-model" in response.decoded, response
        assert backend.last()["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"


@test
def python_urllib_anthropic_stream_over_an_https_backend():
    with InferenceLab() as lab:
        openai = lab.backend()
        anthropic = lab.backend(BACKEND_IP, tls=True)
        proxy = lab.inference_proxy(lab.routes_file(openai=openai, anthropic=anthropic))
        request = urllib.request.Request(
            "https://inference.local/v1/messages", method="POST",
            data=json.dumps({"model": "claude-client", "stream": True, "max_tokens": 5,
                             "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"x-api-key": CLIENT_KEY, "Authorization": f"Bearer {CLIENT_KEY}",
                     "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024",
                     "Content-Type": "application/json"})
        with urllib_opener(proxy).open(request, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            text = response.read().decode()
        events = [json.loads(e) for e in sse_data(text)]
        assert [e["type"] for e in events] == ["message_start", "content_block_delta",
                                               "message_stop"], text
        assert events[0]["message"]["model"] == "routed-claude", events
        received = anthropic.last()
        assert received["path"] == "/v1/messages", received
        headers = received["headers"]
        assert headers["x-api-key"] == ANTHROPIC_KEY, headers
        assert "authorization" not in headers, headers
        assert headers["anthropic-version"] == "2023-06-01", headers
        assert headers["anthropic-beta"] == "tools-2024", headers
        assert json.loads(received["body"])["model"] == "routed-claude"
        assert openai.count() == 0
        assert_no_keys(proxy)


@test
def python_http_client_embeddings_models_and_plain_http_forward():
    with InferenceLab() as lab:
        backend = lab.backend()
        proxy = lab.inference_proxy(lab.routes_file(openai=backend))
        context = ssl.create_default_context(cafile=proxy.ca)
        connection = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=10,
                                                 context=context)
        connection.set_tunnel("inference.local", 443)
        connection.request("POST", "/v1/embeddings", body=json.dumps(
            {"model": "text-embed-client", "input": "hello"}),
            headers={"Content-Type": "application/json", "Authorization": "Bearer nope"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and answer["model"] == "routed-gpt", answer
        assert response.getheader("Content-Length") is not None
        assert response.getheader("X-Backend") == "fake"
        # Same connection (keep-alive inside the tunnel): the models list.
        connection.request("GET", "/v1/models")
        response = connection.getresponse()
        models = json.loads(response.read())
        assert response.status == 200 and models["data"][0]["id"] == "backend-model", models
        assert backend.last()["path"] == "/v1/models"
        assert backend.last()["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
        connection.close()

        # Plain-HTTP forward form (issue 8: intercepted too), from curl and from urllib.
        code, body, result = curl_inference(proxy, "/v1/models", scheme="http")
        assert code == "200" and b"backend-model" in body, (code, body, result.stderr)
        with urllib_opener(proxy).open("http://inference.local/v1/embeddings", data=json.dumps(
                {"input": "x", "model": "m0"}).encode(), timeout=10) as response:
            assert json.loads(response.read())["model"] == "routed-gpt"
        assert backend.last()["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
        assert_no_keys(proxy)


@test
def no_route_503_then_ctl_set_routes_serves_and_status_hides_the_keys():
    with InferenceLab() as lab:
        backend = lab.backend()
        control = "unix:" + os.path.join(lab.dir, "ctl", "control.sock")
        proxy = lab.inference_proxy(None, ["--control", control])
        event = proxy.wait_for(lambda e: "control" in e.get("unmapped", {}), what="control")
        endpoint = event["unmapped"]["control"]
        code, body, _ = curl_inference(proxy, "/v1/chat/completions", "--data-binary",
                                       chat_body())
        assert code == "503", (code, body)
        assert json.loads(body)["error"] == "cluster inference is not configured", body

        routes = lab.routes_file(openai=backend)
        result = run("ctl", "--endpoint", endpoint, "set-routes", routes)
        assert result.returncode == 0 and "1 inference route(s)" in result.stdout, result
        code, body, _ = curl_inference(proxy, "/v1/chat/completions", "--data-binary",
                                       chat_body())
        assert code == "200" and json.loads(body)["model"] == "routed-gpt", (code, body)
        # An Anthropic request has no compatible route.
        code, body, _ = curl_inference(proxy, "/v1/messages", "--data-binary", "{}")
        assert code == "400", (code, body)
        assert json.loads(body)["error"] == "no compatible inference route available", body

        status = run("ctl", "--endpoint", endpoint, "status", "--json")
        assert status.returncode == 0 and "local-openai" in status.stdout, status
        assert_no_keys(proxy, status.stdout, status.stderr, result.stdout, result.stderr)


@test
def oversized_body_413_non_inference_path_403():
    with InferenceLab() as lab:
        backend = lab.backend()
        proxy = lab.inference_proxy(lab.routes_file(openai=backend))
        big = os.path.join(lab.dir, "big.json")
        with open(big, "wb") as handle:
            handle.write(b'{"model":"x","input":"' + b"a" * (10 * 1024 * 1024) + b'"}')
        code, body, result = curl_inference(proxy, "/v1/embeddings", "--data-binary", "@" + big,
                                            "-H", "Content-Type: application/json")
        assert code == "413", (code, body[:200], result.stderr)
        # Chunked past the limit too, refused while reading.
        sock = lab.track(tls_to_inference(proxy))
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: inference.local\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"a" * (1024 * 1024)
        try:
            for _ in range(11):
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        except OSError:
            pass  # the proxy may answer and close before the last chunk
        response = read_response(sock, timeout=10)
        assert_json_error(response, 413, {"error": "Payload Too Large"})
        assert backend.count() == 0

        for method, path in (("GET", "/"), ("POST", "/v1/chat"), ("DELETE", "/v1/models/x")):
            sock = lab.track(tls_to_inference(proxy))
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: inference.local\r\n\r\n".encode())
            response = read_response(sock)
            assert_json_error(response, 403, {"error": "connection not allowed by policy"})
        code, body, _ = curl_inference(proxy, "/admin", scheme="http")
        assert code == "403", (code, body)
        assert backend.count() == 0
        # CL+TE is refused before routing.
        sock = lab.track(tls_to_inference(proxy))
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: inference.local\r\n"
                     b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}")
        response = read_response(sock)
        assert response.status == 400, response
        assert backend.count() == 0


@test
def unreachable_backend_503_without_leaking_its_address():
    with InferenceLab() as lab:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        routes = lab.write("routes.yaml", "routes:\n  - {name: dead, protocol: openai, "
                           f"base_url: 'http://127.0.0.1:{dead_port}/v1', api_key: {OPENAI_KEY}}}\n")
        proxy = lab.inference_proxy(routes)
        code, body, _ = curl_inference(proxy, "/v1/chat/completions", "--data-binary",
                                       chat_body())
        assert code == "503", (code, body)
        assert json.loads(body) == {"error": "inference service unavailable"}, body
        assert str(dead_port).encode() not in body
        assert_no_keys(proxy)


@test
def bad_routes_file_is_refused_at_start():
    with InferenceLab() as lab:
        routes = lab.write("routes.yaml", "routes:\n  - {name: x, protocol: openai, "
                           "base_url: 'ftp://h', api_key: k}\n")
        result = run("proxy", "--listen", "127.0.0.1:0", "--inference-routes", routes)
        assert result.returncode == 1, result
        assert "http(s) URL" in result.stderr, result.stderr



@test
def sandboxed_curl_reaches_the_backend_through_inference_local():
    with InferenceLab() as lab:
        backend = lab.backend()
        routes = lab.routes_file(openai=backend)
        script = ("/usr/bin/curl -sS --max-time 10 https://inference.local/v1/chat/completions "
                  f"-H 'Authorization: Bearer {CLIENT_KEY}' -H 'Content-Type: application/json' "
                  f"-d '{chat_body()}'")
        result = subprocess.run(
            [BIN, "sandbox", "--log-format", "json", "--inference-routes", routes, "--",
             "/bin/sh", "-c", script], capture_output=True, text=True, errors="replace",
            timeout=60, cwd="/")
        assert result.returncode == 0, (result.stdout, result.stderr[-3000:])
        assert json.loads(result.stdout)["model"] == "routed-gpt", result.stdout
        headers = backend.last()["headers"]
        assert headers["authorization"] == f"Bearer {OPENAI_KEY}", headers
        assert OPENAI_KEY not in result.stdout + result.stderr

if __name__ == "__main__":
    main()
