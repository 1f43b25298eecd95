"""`openshell proxy` end to end: the real binary, real clients (curl, python sockets/ssl) and local
origins, one fresh network namespace per test (see proxy_fixture.py).

Covers (proxy-spec §2.8-2.10, §8, §9, docs/policy-semantics.md, man/openshell-proxy.1):
CONNECT tunnels with a TLS handshake through them (curl -p and python ssl), pipelined bytes,
half-close, exact byte counts and their OPEN/CLOSE events; the exact JSON of policy denials
(CONNECT and forward); wildcard hosts and `ports` lists; the SSRF guard (loopback, IPv6,
IPv4-mapped, metadata, unspecified, a private test host with and without `allowed_ips`);
malformed heads (CL+TE, oversized and the exact 8 KiB limit, bare LF, obs-fold, ...) and
malformed chunked bodies; slowloris cut at --head-timeout; refused (502) and timed-out (504)
upstreams; forward-proxy schemes, keep-alive with per-request decisions, L7 read-only
enforcement and audit, request bodies (Content-Length and chunked); SIGHUP reload (valid and
invalid); SIGTERM drain within --grace; deny-all without --policy; --max-connections;
--idle-timeout; --require-identity; several --listen addresses (IPv6); --log-file and text logs;
the CLI contract of `openshell proxy` (help, usage errors exit 2, start failures exit 1).

Only loopback and addresses inside namespaces the tests create are ever contacted.
"""
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time

from proxy_fixture import (Lab, policy_yaml, Response, assert_json_error, closed_port, connect_request, curl,
                           exchange, forward_request, open_tunnel, read_response, recv_until_close,
                           request, tls_files)
from tap import BIN, main, run, test

LOOPBACK = ["--allow-loopback-upstream"]




def tunnel_get(sock, host_port, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
    return read_response(sock)


def policy_denied_connect(host, port, reason):
    return {"error": "policy_denied", "detail": f"CONNECT {host}:{port} not permitted by policy",
            "reason": reason}


def not_allowed_reason(host, port):
    return f"endpoint {host}:{port} is not allowed by any policy"


def unreachable(host, port):
    return {"error": "upstream_unreachable", "detail": f"connection to {host}:{port} failed"}


# ------------------------------------------------------------------------------------------------
# 1. CONNECT end to end


@test
def connect_allowed_tls_end_to_end_with_curl_and_open_close_events():
    with Lab() as lab:
        origin = lab.origin(tls=True)
        proxy = lab.proxy(policy_yaml({"local": [{"host": "localhost", "port": origin.port}]}),
                          LOOPBACK)
        cert, _ = tls_files()
        result = curl("-p", "-x", f"http://127.0.0.1:{proxy.port}",
                      f"https://localhost:{origin.port}/hello", "--cacert", cert)
        assert result.returncode == 0, result
        assert result.stdout == b"origin o GET /hello\n", result.stdout
        assert origin.request_count() == 1

        opened = proxy.wait_for(
            lambda e: e.get("class_name") == "Network Activity" and e.get("activity_name") == "Open"
            and e.get("action") == "Allowed", what="NET OPEN allowed")
        assert opened["message"] == f"CONNECT allowed localhost:{origin.port}", opened
        assert opened["dst_endpoint"]["domain"] == "localhost", opened
        assert opened["dst_endpoint"]["port"] == origin.port, opened
        assert opened["dst_endpoint"]["ip"] in ("127.0.0.1", "::1"), opened
        assert opened["firewall_rule"]["name"] == "local", opened
        cid = opened["metadata"]["correlation_uid"]
        closed = proxy.wait_for(
            lambda e: e.get("activity_name") == "Close"
            and e.get("metadata", {}).get("correlation_uid") == cid, what="NET CLOSE")
        traffic = closed["traffic"]
        # A TLS handshake plus one request/response each way: well over a few hundred bytes.
        assert traffic["bytes_in"] > 300 and traffic["bytes_out"] > 200, closed
        assert traffic["bytes"] == traffic["bytes_in"] + traffic["bytes_out"], closed
        assert closed["message"].startswith(f"CLOSE localhost:{origin.port} in="), closed

        # The same through python's ssl over a raw CONNECT socket, verifying the origin's cert.
        context = ssl.create_default_context(cafile=cert)
        with open_tunnel(proxy.port, f"localhost:{origin.port}") as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
                tls.sendall(f"GET /py HTTP/1.1\r\nHost: localhost:{origin.port}\r\n"
                            "Connection: close\r\n\r\n".encode())
                response = read_response(tls)
        assert response.status == 200 and response.decoded == b"origin o GET /py\n", response
        assert origin.request_count() == 2


@test
def connect_tunnel_relays_pipelined_bytes_large_bodies_half_close_and_counts_exactly():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK)
        sent = received = 0
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            # The first request rides in the same segment as the CONNECT head.
            first = f"GET /pipelined HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
            sock.sendall(connect_request(authority) + first)
            sent += len(first)
            established = b""
            while not established.endswith(b"\r\n\r\n"):
                established += sock.recv(1)
            assert established == b"HTTP/1.1 200 Connection Established\r\n\r\n", established
            response = read_response(sock)
            received += len(response.raw)
            assert response.decoded == b"origin o GET /pipelined\n", response

            body = bytes(random.Random(3).randrange(256) for _ in range(300_000))
            post = (f"POST /echo HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {len(body)}"
                    "\r\n\r\n").encode() + body
            sock.sendall(post)
            sent += len(post)
            response = read_response(sock, timeout=10)
            received += len(response.raw)
            assert response.decoded == body, len(response.decoded)

            # Half-close: the client is done sending, the answer still comes back.
            last = f"GET /last HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
            sock.sendall(last)
            sent += len(last)
            sock.shutdown(socket.SHUT_WR)
            rest = recv_until_close(sock)
            received += len(rest)
            assert Response(rest).body == b"origin o GET /last\n", rest
        closed = proxy.wait_for(lambda e: e.get("activity_name") == "Close", what="CLOSE event")
        assert closed["traffic"]["bytes_out"] == sent, (closed, sent)
        assert closed["traffic"]["bytes_in"] == received, (closed, received)
        assert [r["path"] for r in origin.requests] == ["/pipelined", "/echo", "/last"]


# ------------------------------------------------------------------------------------------------
# 2. Exact denial bodies


@test
def denied_host_gets_exact_403_json_for_connect_and_forward():
    with Lab() as lab:
        origin = lab.origin()
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK)
        response = request(proxy.port, connect_request("evil.example:443"))
        assert response.raw.startswith(b"HTTP/1.1 403 Forbidden\r\n"), response
        assert_json_error(response, 403, {
            "error": "policy_denied",
            "detail": "CONNECT evil.example:443 not permitted by policy",
            "reason": "endpoint evil.example:443 is not allowed by any policy"})

        response = request(proxy.port, forward_request(
            "GET", "http://evil.example:8080/some/path?secret=1", "evil.example:8080"))
        assert response.raw.startswith(b"HTTP/1.1 403 Forbidden\r\n"), response
        assert_json_error(response, 403, {
            "error": "policy_denied",
            "detail": "GET evil.example:8080/some/path not permitted by policy"})

        # The same through curl's own forward-proxy code, default port 80.
        result = curl("-x", f"http://127.0.0.1:{proxy.port}", "-o", "/dev/null", "-w",
                      "%{http_code}", "http://evil.example/x")
        assert result.stdout == b"403", result
        assert origin.request_count() == 0
        denied = proxy.wait_for(lambda e: e.get("message") == "CONNECT denied evil.example:443",
                                what="CONNECT denied event")
        assert denied["action"] == "Denied", denied
        assert proxy.alive()


# ------------------------------------------------------------------------------------------------
# 3. Wildcards and port lists


@test
def wildcard_hosts_and_port_lists_decide_through_the_proxy():
    with Lab() as lab:
        a, b, c = lab.origin(name="a"), lab.origin(name="b"), lab.origin(name="c")
        proxy = lab.proxy(policy_yaml({
            "wild": [{"host": "*.example.test", "ports": [443, 8443]}],
            "list": [{"host": "origin.test", "ports": [a.port, b.port]}],
            # `ports` wins over `port` (docs/policy-semantics.md).
            "both": [{"host": "other.test", "port": c.port, "ports": [a.port]}],
        }), LOOPBACK)
        # Allowed by the wildcard, but the name does not resolve (the namespace has no DNS): 502.
        for target in ("api.example.test:443", "API.Example.TEST:8443", "x-1.example.test:8443"):
            response = request(proxy.port, connect_request(target))
            host, port = target.rsplit(":", 1)
            # The host is lowercased before anything else (spec §2.1), the detail included.
            assert_json_error(response, 502, unreachable(host.lower(), port))
        response = request(proxy.port, forward_request("GET", "http://api.example.test:8443/p",
                                                       "api.example.test:8443"))
        assert_json_error(response, 502, unreachable("api.example.test", 8443))
        # Denied by the pattern (label count) or the port list: 403 policy_denied.
        for host, port in (("example.test", 443), ("a.b.example.test", 443),
                           ("api.example.test", 80), ("api.example.testx", 443),
                           ("apiexample.test", 443), ("A.B.Example.Test", 8443)):
            response = request(proxy.port, connect_request(f"{host}:{port}"))
            assert_json_error(response, 403, policy_denied_connect(
                host.lower(), port, not_allowed_reason(host.lower(), port)))
        response = request(proxy.port, forward_request("GET", "http://a.b.example.test:443/p",
                                                       "a.b.example.test:443"))
        assert_json_error(response, 403, {
            "error": "policy_denied",
            "detail": "GET a.b.example.test:443/p not permitted by policy"})

        # ports: [a, b] admits both origins, not c.
        for origin in (a, b):
            response = request(proxy.port, forward_request(
                "GET", f"http://origin.test:{origin.port}/ok", f"origin.test:{origin.port}"))
            assert response.status == 200, response
            assert response.body == f"origin {origin.name} GET /ok\n".encode(), response
        response = request(proxy.port, connect_request(f"origin.test:{c.port}"))
        assert_json_error(response, 403, policy_denied_connect(
            "origin.test", c.port, not_allowed_reason("origin.test", c.port)))
        response = request(proxy.port, connect_request(f"other.test:{c.port}"))
        assert_json_error(response, 403, policy_denied_connect(
            "other.test", c.port, not_allowed_reason("other.test", c.port)))
        with open_tunnel(proxy.port, f"other.test:{a.port}") as sock:
            assert tunnel_get(sock, f"other.test:{a.port}", "/t").status == 200
        assert c.request_count() == 0


# ------------------------------------------------------------------------------------------------
# 4. SSRF guard (every test in its own namespace: nothing can leave the machine)


def ssrf_detail_ok(detail, prefix, host, port, kind):
    """IPv6 hosts may be written bracketed or bare in the detail; the rest is exact."""
    bare = f"{prefix} {host}:{port} blocked: {kind}"
    bracketed = f"{prefix} [{host}]:{port} blocked: {kind}"
    return detail == bare or (":" in host and detail == bracketed)


def assert_ssrf_denied(response, prefix, host, port, kind="internal address"):
    assert response.status == 403, response
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == "ssrf_denied", body
    assert ssrf_detail_ok(body["detail"], prefix, host, port, kind), body
    assert response.header("content-type") == "application/json", response
    assert response.header("content-length") == str(len(response.body)), response
    assert response.header("connection") == "close", response


def assert_reachable_directly(targets):
    """Precondition: a listener really answers behind each address, so only the guard stands
    between the proxy and it (a broken guard would show up as a 200, not as a dial error)."""
    for host, port in targets:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as sock:
            sock.settimeout(2)
            sock.connect((host, port))
            sock.sendall(b"GET /direct-probe HTTP/1.0\r\n\r\n")
            assert recv_until_close(sock).startswith(b"HTTP/1.1 200 "), (host, port)


@test
def ssrf_guard_blocks_loopback_ipv6_mapped_and_metadata_without_flag():
    with Lab() as lab:
        # Real listeners behind every blocked address: a broken guard would be served, not 502.
        lab.ip("addr", "add", "169.254.169.254/32", "dev", "lo")
        v4 = lab.origin("127.0.0.1", name="v4")
        v6 = lab.origin("::1", name="v6")
        meta = lab.origin("169.254.169.254", name="meta")
        proxy = lab.proxy(policy_yaml({"ssrf": [
            {"host": "127.0.0.1", "port": v4.port},
            {"host": "localhost", "ports": [v4.port, v6.port]},
            {"host": "::1", "port": v6.port},
            {"host": "::ffff:127.0.0.1", "port": v4.port},
            {"host": "169.254.169.254", "port": meta.port},
            {"host": "origin.test", "port": v4.port},
        ]}))
        assert_reachable_directly([("127.0.0.1", v4.port), ("::1", v6.port),
                                   ("::ffff:127.0.0.1", v4.port), ("169.254.169.254", meta.port)])
        cases = [("127.0.0.1", v4.port), ("localhost", v4.port), ("localhost", v6.port),
                 ("::1", v6.port), ("::ffff:127.0.0.1", v4.port), ("169.254.169.254", meta.port),
                 ("origin.test", v4.port)]
        for host, port in cases:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            response = request(proxy.port, connect_request(authority))
            assert_ssrf_denied(response, "CONNECT", host, port)
            response = request(proxy.port,
                               forward_request("GET", f"http://{authority}/x", authority))
            assert_ssrf_denied(response, "GET", host, port)
        for origin in (v4, v6, meta):
            paths = [r["path"] for r in origin.requests]
            assert set(paths) <= {"/direct-probe"}, origin.requests
        blocked = [e for e in proxy.events() if e.get("firewall_rule", {}).get("type") == "ssrf"]
        assert len(blocked) >= len(cases), [e.get("message") for e in proxy.events()]


@test
def ssrf_guard_with_loopback_flag_still_blocks_metadata_and_unspecified():
    with Lab() as lab:
        lab.ip("addr", "add", "169.254.169.254/32", "dev", "lo")
        v4 = lab.origin("127.0.0.1", name="v4")  # 0.0.0.0 and :: connect to local listeners
        v6 = lab.origin("::1", name="v6")
        meta = lab.origin("169.254.169.254", name="meta")
        proxy = lab.proxy(policy_yaml({"ssrf": [
            {"host": "127.0.0.1", "port": v4.port},
            {"host": "169.254.169.254", "port": meta.port},
            {"host": "::ffff:169.254.169.254", "port": meta.port},
            {"host": "0.0.0.0", "port": v4.port},
            {"host": "::", "port": v6.port},
        ]}), LOOPBACK)
        assert_reachable_directly([("169.254.169.254", meta.port), ("0.0.0.0", v4.port),
                                   ("::", v6.port)])
        for host, port in (("169.254.169.254", meta.port), ("::ffff:169.254.169.254", meta.port),
                           ("0.0.0.0", v4.port), ("::", v6.port)):
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            assert_ssrf_denied(request(proxy.port, connect_request(authority)), "CONNECT", host,
                               port)
            assert_ssrf_denied(request(proxy.port, forward_request(
                "GET", f"http://{authority}/x", authority)), "GET", host, port)
        for origin in (v4, v6, meta):
            paths = [r["path"] for r in origin.requests]
            assert set(paths) <= {"/direct-probe"}, origin.requests
        # The flag itself works: plain loopback is admitted.
        response = request(proxy.port, forward_request("GET", f"http://127.0.0.1:{v4.port}/ok",
                                                       f"127.0.0.1:{v4.port}"))
        assert response.status == 200 and response.body == b"origin v4 GET /ok\n", response


@test
def ssrf_private_test_host_needs_allowed_ips():
    with Lab() as lab:
        lab.add_test_host("10.99.0.1/24")  # veth in the namespace; /etc/hosts: private.test
        private = lab.origin("10.99.0.1", name="private")
        port = private.port
        assert_reachable_directly([("10.99.0.1", port)])
        private.requests.clear()
        authority = f"private.test:{port}"
        plain = lab.proxy(policy_yaml({"p": [{"host": "private.test", "port": port},
                                             {"host": "10.99.0.1", "port": port}]}),
                          policy_name="plain.yaml")
        assert_json_error(request(plain.port, connect_request(authority)), 403, {
            "error": "ssrf_denied", "detail": f"CONNECT {authority} blocked: internal address"})
        assert_json_error(request(plain.port, forward_request("GET", f"http://{authority}/x",
                                                              authority)), 403, {
            "error": "ssrf_denied", "detail": f"GET {authority} blocked: internal address"})
        assert private.request_count() == 0
        # An IP-literal host is its own allowlist (spec §2.8 8c): the literal is admitted.
        with open_tunnel(plain.port, f"10.99.0.1:{port}") as sock:
            response = tunnel_get(sock, f"10.99.0.1:{port}", "/literal")
            assert response.body == b"origin private GET /literal\n", response

        allowed = lab.proxy(policy_yaml({
            "p": [{"host": "private.test", "port": port, "allowed_ips": ["10.99.0.0/24"]}],
            "narrow": [{"host": "other.test", "port": port, "allowed_ips": ["10.98.0.0/24"]}],
        }), policy_name="allowed.yaml")
        with open_tunnel(allowed.port, authority) as sock:
            response = tunnel_get(sock, authority, "/via-connect")
            assert response.status == 200, response
            assert response.body == b"origin private GET /via-connect\n", response
        response = request(allowed.port, forward_request("GET", f"http://{authority}/via-forward",
                                                         authority))
        assert response.status == 200, response
        assert response.body == b"origin private GET /via-forward\n", response
        # other.test resolves to 127.0.0.1: loopback is never in allowed_ips.
        assert_json_error(request(allowed.port, connect_request(f"other.test:{port}")), 403, {
            "error": "ssrf_denied",
            "detail": f"CONNECT other.test:{port} blocked: allowed_ips check failed"})


# ------------------------------------------------------------------------------------------------
# 5. Malformed input


def assert_bare_status(raw, status_line):
    """A bodiless proxy answer (spec §9: 400/431 carry no body) followed by the close."""
    response = Response(raw)
    assert raw.startswith(f"HTTP/1.1 {status_line}\r\n".encode()), raw
    assert response.body == b"", raw
    assert response.header("content-length") in (None, "0"), raw


@test
def malformed_requests_get_400_or_431_and_the_proxy_keeps_serving():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK)
        cl_te = (f"POST http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()
        assert_bare_status(exchange(proxy.port, cl_te), "400 Bad Request")
        cl_te_connect = (f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
                         "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        assert_bare_status(exchange(proxy.port, cl_te_connect), "400 Bad Request")
        big = (f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n"
               f"X-Big: {'a' * 20480}\r\n\r\n").encode()
        assert_bare_status(exchange(proxy.port, big), "431 Request Header Fields Too Large")
        big_connect = (f"CONNECT {authority} HTTP/1.1\r\nX-Big: {'b' * 20480}\r\n\r\n").encode()
        assert_bare_status(exchange(proxy.port, big_connect), "431 Request Header Fields Too Large")
        bare_lf = f"GET http://{authority}/ HTTP/1.1\nHost: {authority}\n\n".encode()
        assert_bare_status(exchange(proxy.port, bare_lf), "400 Bad Request")
        mixed_lf = f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\n\r\n".encode()
        assert_bare_status(exchange(proxy.port, mixed_lf), "400 Bad Request")
        # Further header-block violations the man page lists (obs-fold, missing Host, ...).
        for bad in (f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\nX: a\r\n b\r\n\r\n",
                    f"GET http://{authority}/ HTTP/1.1\r\nConnection: close\r\n\r\n",
                    f"GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n"
                    f"Host: {authority}\r\n\r\n",
                    f"POST http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n"
                    "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                    f"POST http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n"
                    "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                    f"GET http://{authority}/ HTTP/2.0\r\nHost: {authority}\r\n\r\n",
                    f"GET http://{authority}/ HTTP/1.1\r\nHost : {authority}\r\n\r\n",
                    f"GET http://{authority}/x#frag HTTP/1.1\r\nHost: {authority}\r\n\r\n",
                    "GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n",
                    "CONNECT origin.test HTTP/1.1\r\nHost: origin.test\r\n\r\n",
                    "CONNECT origin.test:70000 HTTP/1.1\r\nHost: origin.test\r\n\r\n"):
            assert_bare_status(exchange(proxy.port, bad.encode()), "400 Bad Request")
        # The 8 KiB limit is exact: 8192 bytes of head pass, 8193 get 431.
        prefix = (f"GET http://{authority}/limit HTTP/1.1\r\nHost: {authority}\r\n"
                  "Connection: close\r\nX: ")
        at_limit = (prefix + "a" * (8192 - len(prefix) - 4) + "\r\n\r\n").encode()
        assert len(at_limit) == 8192
        assert Response(exchange(proxy.port, at_limit)).status == 200
        assert_bare_status(exchange(proxy.port, at_limit.replace(b"X: a", b"X: aa")),
                           "431 Request Header Fields Too Large")
        origin.requests.clear()
        assert origin.request_count() == 0, origin.requests
        assert proxy.alive()
        response = request(proxy.port, forward_request("GET", f"http://{authority}/after",
                                                       authority))
        assert response.status == 200 and response.body == b"origin o GET /after\n", response
        with open_tunnel(proxy.port, authority) as sock:
            assert tunnel_get(sock, authority, "/tunnel").status == 200
        assert [r["path"] for r in origin.requests] == ["/after", "/tunnel"], origin.requests


# ------------------------------------------------------------------------------------------------
# 6. Slowloris


@test
def slowloris_client_is_cut_at_head_timeout_while_others_are_served():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK + ["--head-timeout", "1"])
        outcome = {}

        def slow_client(name, trickle):
            sock = lab.track(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
            start = time.monotonic()
            sock.settimeout(0.1)
            data = b""
            if trickle:
                sock.sendall(f"GET http://{authority}/slow HTTP/1.1\r\nHost: ".encode())
            filler = b"X-Pad-" * 1000
            index = 0
            while time.monotonic() - start < 5:
                if trickle:
                    try:
                        sock.send(filler[index:index + 1])
                        index += 1
                    except OSError:
                        break
                try:
                    chunk = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            outcome[name] = (time.monotonic() - start, data, index, time.monotonic())

        threads = [threading.Thread(target=slow_client, args=("trickle", True)),
                   threading.Thread(target=slow_client, args=("silent", False))]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        response = request(proxy.port, forward_request("GET", f"http://{authority}/fast",
                                                       authority))
        fast_done = time.monotonic()
        fast_elapsed = fast_done - started
        for thread in threads:
            thread.join(timeout=10)
        assert response.status == 200 and response.body == b"origin o GET /fast\n", response
        assert fast_elapsed < 0.6, fast_elapsed
        for name in ("trickle", "silent"):
            elapsed, data, sent, closed_at = outcome[name]
            assert 0.9 <= elapsed <= 2.5, (name, elapsed, data)
            assert fast_done < closed_at, "the normal client was not served while slow ones waited"
            # Cut without a response, or with a 408; never served.
            assert data == b"" or data.startswith(b"HTTP/1.1 408 "), (name, data)
        assert outcome["trickle"][2] >= 5, outcome["trickle"]  # it really did keep trickling
        assert [r["path"] for r in origin.requests] == ["/fast"], origin.requests


# ------------------------------------------------------------------------------------------------
# 7. Refused upstream


@test
def refused_upstream_gives_502_upstream_unreachable_for_forward_and_connect():
    with Lab() as lab:
        port = closed_port()
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": port},
                                                 {"host": "127.0.0.1", "port": port}]}), LOOPBACK)
        for host in ("origin.test", "127.0.0.1"):
            authority = f"{host}:{port}"
            response = request(proxy.port, forward_request("GET", f"http://{authority}/x",
                                                           authority))
            assert response.raw.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), response
            assert_json_error(response, 502, unreachable(host, port))
            response = request(proxy.port, connect_request(authority))
            assert response.raw.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), response
            assert_json_error(response, 502, unreachable(host, port))
        assert proxy.alive()


# ------------------------------------------------------------------------------------------------
# 8. Forward proxy


@test
def forward_https_and_other_schemes_are_rejected_with_400():
    with Lab() as lab:
        origin = lab.origin()
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK)
        response = request(proxy.port, forward_request("GET", "https://origin.test/x",
                                                       "origin.test"))
        assert response.raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
        assert response.body.rstrip(b"\n") == b"Use CONNECT for HTTPS URLs", response
        assert response.header("content-length") == "27" == str(len(response.body)), response
        for url in ("ftp://origin.test/x", "gopher://origin.test:70/x", "ws://origin.test/x"):
            response = request(proxy.port, forward_request("GET", url, "origin.test"))
            assert_json_error(response, 400, {"error": "unsupported_proxy_scheme",
                                              "detail": "Forward proxy requests must use http"})
        assert origin.request_count() == 0


@test
def forward_keep_alive_decides_each_request_on_its_own():
    with Lab() as lab:
        origin = lab.origin()
        port = origin.port
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": port},
                                                 {"host": "other.test", "port": port}]}), LOOPBACK)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            for host, path in (("origin.test", "/first"), ("other.test", "/second")):
                sock.sendall(f"GET http://{host}:{port}{path} HTTP/1.1\r\n"
                             f"Host: {host}:{port}\r\n\r\n".encode())
                response = read_response(sock)
                assert response.status == 200, response
                assert response.decoded == f"origin o GET {path}\n".encode(), response
                assert (response.header("connection") or "").lower() != "close", response
            sock.sendall(f"GET http://origin.test:{port}/chunked-response HTTP/1.1\r\n"
                         f"Host: origin.test:{port}\r\n\r\n".encode())
            response = read_response(sock)
            assert response.status == 200, response
            assert response.decoded == b"chunked response from origin\n", response
            sock.sendall(f"GET http://evil.test:{port}/third HTTP/1.1\r\n"
                         f"Host: evil.test:{port}\r\n\r\n".encode())
            response = Response(recv_until_close(sock))
            assert_json_error(response, 403, {
                "error": "policy_denied",
                "detail": f"GET evil.test:{port}/third not permitted by policy"})
        assert [(r["path"], r["headers"].get("Host")) for r in origin.requests] == [
            ("/first", f"origin.test:{port}"), ("/second", f"other.test:{port}"),
            ("/chunked-response", f"origin.test:{port}")], origin.requests


@test
def forward_l7_read_only_enforced_and_audit_forwards():
    with Lab() as lab:
        origin = lab.origin()
        port = origin.port
        proxy = lab.proxy(policy_yaml({
            "api": [{"host": "l7.test", "port": port, "protocol": "rest",
                     "enforcement": "enforce", "access": "read-only"}],
            "audited": [{"host": "other.test", "port": port, "protocol": "rest",
                         "enforcement": "audit", "access": "read-only"}],
        }), LOOPBACK)
        authority = f"l7.test:{port}"
        for method in ("GET", "HEAD", "OPTIONS"):
            response = request(proxy.port, forward_request(method, f"http://{authority}/items/1",
                                                           authority))
            assert response.status == 200, (method, response)
        for method in ("DELETE", "POST"):
            body = b"payload" if method == "POST" else b""
            response = request(proxy.port, forward_request(
                method, f"http://{authority}/items/1?x=1", authority, body=body))
            assert_json_error(response, 403, {
                "error": "policy_denied",
                "detail": f"{method} {authority}/items/1 denied by L7 policy: "
                          f"{method} /items/1 not permitted by policy"})
        assert [r["method"] for r in origin.requests] == ["GET", "HEAD", "OPTIONS"], origin.requests
        # The L7 decision uses the canonical path: a dot-segment cannot dodge it.
        response = request(proxy.port, forward_request(
            "DELETE", f"http://{authority}/public/../items/1", authority))
        assert response.status == 403 and "DELETE /items/1" in response.json()["detail"], response
        # audit: the violation is logged and the request forwarded.
        response = request(proxy.port, forward_request("DELETE", f"http://other.test:{port}/a",
                                                       f"other.test:{port}"))
        assert response.status == 200, response
        assert origin.requests[-1]["method"] == "DELETE", origin.requests
        # Through a CONNECT tunnel the same rules hold: plaintext HTTP inside it is inspected.
        raw = exchange(proxy.port, connect_request(authority) + (
            f"DELETE /public/../items/1 HTTP/1.1\r\nHost: {authority}\r\n\r\n").encode())
        assert raw.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\n"), raw
        assert b"HTTP/1.1 403 Forbidden" in raw and b'"layer":"l7"' in raw, raw
        assert b"DELETE /items/1 not permitted" in raw, raw
        assert len(origin.requests) == 4, origin.requests


@test
def forward_request_bodies_are_relayed_intact_content_length_and_chunked():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK)
        rng = random.Random(7)
        body = bytes(rng.randrange(256) for _ in range(100_000)) + b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        response = request(proxy.port, forward_request(
            "POST", f"http://{authority}/echo", authority, "Proxy-Connection: keep-alive\r\n",
            body=body), timeout=10)
        assert response.status == 200 and response.body == body, (response.status,
                                                                  len(response.body))
        seen = origin.requests[-1]
        assert seen["path"] == "/echo" and seen["body"] == body
        assert seen["headers"].get("Host") == authority, seen["headers"]
        assert "Proxy-Connection" not in seen["headers"], seen["headers"]
        assert "Via" in seen["headers"], seen["headers"]

        # Chunked, raw: several chunks, one with an extension, a trailer-free end.
        pieces = [body[:1], body[1:4097], body[4097:60000], body[60000:]]
        chunked = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
        head = (f"POST http://{authority}/chunked HTTP/1.1\r\nHost: {authority}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        response = request(proxy.port, head + chunked, timeout=10)
        assert response.status == 200 and response.body == body, (response.status,
                                                                  len(response.body))
        assert origin.requests[-1]["headers"].get("Transfer-Encoding") == "chunked"
        assert origin.requests[-1]["body"] == body

        # Chunked, from curl.
        path = lab.write("upload.bin", "")
        with open(path, "wb") as handle:
            handle.write(body)
        result = curl("-x", f"http://127.0.0.1:{proxy.port}", "-H", "Transfer-Encoding: chunked",
                      "--data-binary", f"@{path}", f"http://{authority}/curl")
        assert result.returncode == 0, result.stderr
        assert result.stdout == body, len(result.stdout)
        assert origin.requests[-1]["path"] == "/curl" and origin.requests[-1]["body"] == body


@test
def forward_malformed_chunked_body_gets_400():
    # man/openshell-proxy.1: "400 for anything else malformed (..., bad chunking, ...)";
    # spec §2.8 step 1: "bad body framing => 400 Bad Request (no body)".
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK)
        for chunks in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXY0\r\n\r\n", b"-1\r\n\r\n"):
            head = (f"POST http://{authority}/bad HTTP/1.1\r\nHost: {authority}\r\n"
                    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
            raw = exchange(proxy.port, head + chunks)
            assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (chunks, raw)
        assert proxy.alive()


# ------------------------------------------------------------------------------------------------
# 9. SIGHUP reload


@test
def sighup_reload_applies_to_new_connections_and_invalid_file_keeps_previous():
    with Lab() as lab:
        origin = lab.origin()
        port = origin.port
        policy_a = policy_yaml({"a": [{"host": "origin.test", "port": port}]})
        policy_b = policy_yaml({"b": [{"host": "other.test", "port": port}]})
        proxy = lab.proxy(policy_a, LOOPBACK)
        path = os.path.join(lab.dir, "policy.yaml")
        tunnel = lab.track(open_tunnel(proxy.port, f"origin.test:{port}"))
        assert tunnel_get(tunnel, f"origin.test:{port}", "/before").status == 200

        with open(path, "w") as handle:
            handle.write(policy_b)
        proxy.signal(signal.SIGHUP)
        proxy.wait_message("policy generation 2 loaded")
        assert_json_error(request(proxy.port, connect_request(f"origin.test:{port}")), 403,
                          policy_denied_connect("origin.test", port,
                                                not_allowed_reason("origin.test", port)))
        with open_tunnel(proxy.port, f"other.test:{port}") as sock:
            assert tunnel_get(sock, f"other.test:{port}", "/b").status == 200
        # The raw tunnel opened under policy A is connection-scoped: it still carries data.
        response = tunnel_get(tunnel, f"origin.test:{port}", "/after-reload")
        assert response.body == b"origin o GET /after-reload\n", response

        with open(path, "w") as handle:
            handle.write("version: 1\nnetwork_policies:\n  broken:\n    endpoints:\n"
                         "      - { host: other.test, port: 99999, bogus_key: 1 }\n")
        proxy.signal(signal.SIGHUP)
        proxy.wait_message("generation 2 stays active")
        errors = [e for e in proxy.events() if e.get("severity") == "High"
                  and path in e.get("message", "") and "stays active" not in e["message"]]
        assert errors, "no error naming the invalid policy was logged"
        assert not any("generation 3" in e.get("message", "") for e in proxy.events())
        assert_json_error(request(proxy.port, connect_request(f"origin.test:{port}")), 403,
                          policy_denied_connect("origin.test", port,
                                                not_allowed_reason("origin.test", port)))
        with open_tunnel(proxy.port, f"other.test:{port}") as sock:
            assert tunnel_get(sock, f"other.test:{port}", "/still-b").status == 200
        assert tunnel_get(tunnel, f"origin.test:{port}", "/still-open").status == 200
        assert proxy.alive()


# ------------------------------------------------------------------------------------------------
# 10. SIGTERM drain


@test
def sigterm_drains_in_flight_work_refuses_new_connections_and_exits_0_within_grace():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK + ["--grace", "3"])
        tunnel = lab.track(open_tunnel(proxy.port, authority))
        assert tunnel_get(tunnel, authority, "/t0").status == 200
        result = {}

        def slow():
            try:
                result["response"] = request(proxy.port, forward_request(
                    "GET", f"http://{authority}/slow", authority), timeout=8)
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                result["error"] = repr(error)

        thread = threading.Thread(target=slow)
        thread.start()
        assert origin.slow_started.wait(5), "the slow request never reached the origin"
        proxy.signal(signal.SIGTERM)
        sigterm_at = time.monotonic()

        deadline = sigterm_at + 1.0
        while True:
            try:
                probe = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
            except (ConnectionRefusedError, ConnectionResetError):
                # Reset: the SYN raced the listener's close; refused: the listener is gone.
                break
            probe.close()
            assert time.monotonic() < deadline, "new connections still accepted 1 s after SIGTERM"
            time.sleep(0.05)

        thread.join(timeout=8)
        assert "error" not in result, result
        response = result["response"]
        assert response.status == 200, response
        assert response.body == b"slow response complete\n" + b"x" * 4096, response

        # Open tunnels keep working during the grace period.
        time.sleep(max(0.0, sigterm_at + 1.5 - time.monotonic()))
        assert proxy.alive()
        assert tunnel_get(tunnel, authority, "/during-drain").status == 200

        try:
            code = proxy.process.wait(timeout=max(0.1, sigterm_at + 4.0 - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError("proxy still running grace+1 s after SIGTERM") from None
        exited_after = time.monotonic() - sigterm_at
        assert code == 0, (code, proxy.log_text()[-2000:])
        assert exited_after <= 4.0, exited_after
        assert recv_until_close(tunnel, timeout=2) == b""
        proxy.wait_message("proxy stopped", timeout=1)
        with socket.socket() as late:
            late.settimeout(1)
            assert late.connect_ex(("127.0.0.1", proxy.port)) != 0


# ------------------------------------------------------------------------------------------------
# 11. Deny-all


@test
def deny_all_without_policy_refuses_everything_and_says_so():
    with Lab() as lab:
        origin = lab.origin()
        port = origin.port
        proxy = lab.proxy(None, LOOPBACK)
        assert any("deny-all" in e.get("message", "") for e in proxy.events()), proxy.log_text()
        for host in ("origin.test", "127.0.0.1", "evil.example"):
            response = request(proxy.port, connect_request(f"{host}:{port}"))
            assert_json_error(response, 403, policy_denied_connect(
                host, port, "network connections not allowed by policy"))
            response = request(proxy.port, forward_request("GET", f"http://{host}:{port}/x",
                                                           f"{host}:{port}"))
            assert_json_error(response, 403, {
                "error": "policy_denied", "detail": f"GET {host}:{port}/x not permitted by policy"})
        proxy.signal(signal.SIGHUP)
        proxy.wait_message("still deny-all")
        assert_json_error(request(proxy.port, connect_request(f"origin.test:{port}")), 403,
                          policy_denied_connect("origin.test", port,
                                                "network connections not allowed by policy"))
        assert origin.request_count() == 0
        proxy.signal(signal.SIGINT)
        assert proxy.process.wait(timeout=5) == 0


# ------------------------------------------------------------------------------------------------
# 12. Connection limit


@test
def max_connections_refuses_the_third_with_503_proxy_overloaded():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK + ["--max-connections", "2"])
        first = lab.track(open_tunnel(proxy.port, authority))
        second = lab.track(open_tunnel(proxy.port, authority))
        response = request(proxy.port, connect_request(authority))
        assert response.raw.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), response
        assert response.status == 503, response
        body = response.json()
        assert body["error"] == "proxy_overloaded" and isinstance(body.get("detail"), str), body
        assert_json_error(response, 503, body)
        # The two admitted tunnels are unaffected.
        assert tunnel_get(first, authority, "/one").status == 200
        assert tunnel_get(second, authority, "/two").status == 200
        # Closing one frees a slot.
        first.close()
        deadline = time.monotonic() + 3
        while True:
            response = request(proxy.port, forward_request("GET", f"http://{authority}/three",
                                                           authority))
            if response.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert response.status == 200 and response.body == b"origin o GET /three\n", response
        refused = proxy.wait_for(lambda e: "too many concurrent" in e.get("message", ""),
                                 what="refusal event")
        assert refused["activity_name"] == "Refuse", refused


# ------------------------------------------------------------------------------------------------
# --require-identity (no identity source in a standalone proxy)


@test
def require_identity_denies_everything_in_a_standalone_proxy():
    with Lab() as lab:
        origin = lab.origin()
        port = origin.port
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": port}]}),
                          LOOPBACK + ["--require-identity"])
        response = request(proxy.port, connect_request(f"origin.test:{port}"))
        assert response.status == 403 and response.json()["error"] == "policy_denied", response
        assert "identity" in response.json().get("reason", ""), response
        response = request(proxy.port, forward_request("GET", f"http://origin.test:{port}/x",
                                                       f"origin.test:{port}"))
        assert_json_error(response, 403, {
            "error": "policy_denied",
            "detail": f"GET origin.test:{port}/x not permitted by policy"})
        assert origin.request_count() == 0


# ------------------------------------------------------------------------------------------------
# Timeouts, listeners, log destinations


@test
def idle_timeout_closes_silent_tunnels_and_keep_alive_connections_only():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK + ["--idle-timeout", "1"])
        idle = lab.track(open_tunnel(proxy.port, authority))
        busy = lab.track(open_tunnel(proxy.port, authority))
        keep_alive = lab.track(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
        keep_alive.sendall(
            f"GET http://{authority}/ka HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        assert read_response(keep_alive).status == 200
        started = time.monotonic()
        # The busy tunnel talks every 0.3 s for 2 s: never silent for a whole second.
        while time.monotonic() - started < 2.0:
            assert tunnel_get(busy, authority, "/tick").status == 200
            time.sleep(0.3)
        for sock in (idle, keep_alive):
            assert recv_until_close(sock, timeout=1.0) == b""
        assert tunnel_get(busy, authority, "/still").status == 200
        closes = [e for e in proxy.events() if e.get("activity_name") == "Close"]
        assert len(closes) == 1, closes  # the idle tunnel's, not the busy one


@test
def connect_timeout_gives_504_upstream_timeout():
    with Lab() as lab:
        lab.add_test_host("10.99.0.1/24")  # 10.99.0.2 never answers ARP: the SYN goes nowhere
        proxy = lab.proxy(policy_yaml({"p": [{"host": "blackhole.test", "port": 80,
                                              "allowed_ips": ["10.99.0.0/24"]}]}),
                          ["--connect-timeout", "0.5"])
        for data in (connect_request("blackhole.test:80"),
                     forward_request("GET", "http://blackhole.test/x", "blackhole.test")):
            started = time.monotonic()
            response = request(proxy.port, data)
            elapsed = time.monotonic() - started
            assert response.raw.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), response
            assert_json_error(response, 504, {
                "error": "upstream_timeout",
                "detail": "connection to blackhole.test:80 timed out"})
            assert 0.4 <= elapsed <= 2.0, elapsed


@test
def listens_on_several_addresses_including_ipv6():
    with Lab() as lab:
        origin = lab.origin()
        authority = f"origin.test:{origin.port}"
        proxy = lab.proxy(policy_yaml({"local": [{"host": "origin.test", "port": origin.port}]}),
                          LOOPBACK, listen=("127.0.0.1:0", "[::1]:0"))
        assert len(proxy.addresses) == 2, proxy.addresses
        v6 = [a for a in proxy.addresses if a.startswith("[::1]:")]
        assert len(v6) == 1, proxy.addresses
        v6_port = int(v6[0].rsplit(":", 1)[1])
        for proxy_url in (f"http://127.0.0.1:{proxy.port}", f"http://[::1]:{v6_port}"):
            result = curl("-x", proxy_url, f"http://{authority}/via")
            assert result.returncode == 0 and result.stdout == b"origin o GET /via\n", result


@test
def log_file_and_text_format():
    with Lab() as lab:
        log_path = os.path.join(lab.dir, "proxy.log")
        process = subprocess.Popen(
            [BIN, "proxy", "--listen", "127.0.0.1:0", "--log-format", "text",
             "--log-file", log_path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            port = None
            while port is None:
                assert time.monotonic() < deadline and process.poll() is None, "no listen line"
                text = open(log_path).read() if os.path.exists(log_path) else ""
                for line in text.splitlines():
                    if "proxy listening on 127.0.0.1:" in line:
                        port = int(line.split("proxy listening on 127.0.0.1:")[1].split()[0])
                time.sleep(0.02)
            response = request(port, connect_request("evil.example:443"))
            assert response.status == 403, response
            deadline = time.monotonic() + 5
            while "evil.example:443" not in open(log_path).read():
                assert time.monotonic() < deadline, open(log_path).read()
                time.sleep(0.02)
            for line in open(log_path).read().splitlines():
                assert not line.startswith("{"), line  # text, not JSON
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=10)
        assert process.returncode == 0, (process.returncode, err)
        assert out == b"" and err == b"", (out, err)


# ------------------------------------------------------------------------------------------------
# 13. CLI contract


PROXY_FLAGS = ["--help", "--listen", "--policy", "--log-format", "--log-file", "--log-level",
               "--threads", "--max-connections", "--head-timeout", "--connect-timeout",
               "--idle-timeout", "--grace", "--resolver-threads", "--allow-loopback-upstream",
               "--require-identity"]


@test
def proxy_help_lists_every_flag_and_bad_flags_exit_2():
    result = run("proxy", "--help")
    assert result.returncode == 0, result
    for flag in PROXY_FLAGS:
        assert flag in result.stdout, (flag, result.stdout)
    bad = [["--bogus"], ["extra-positional"], ["--listen"], ["--max-connections", "0"],
           ["--max-connections", "abc"], ["--threads", "300"], ["--resolver-threads", "0"],
           ["--head-timeout", "0"], ["--head-timeout", "-1"], ["--connect-timeout", "x"],
           ["--idle-timeout", "0"], ["--grace", "-1"], ["--log-format", "xml"],
           ["--log-level", "trace"], ["--policy", "/nonexistent/policy.yaml"]]
    for args in bad:
        result = run("proxy", *args, timeout=10)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--help" in lines[0], (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)


@test
def proxy_start_failures_exit_1():
    with Lab() as lab:
        invalid = lab.write("invalid.yaml", "version: 1\nnetwork_policies:\n  x:\n    endpoints:\n"
                                            "      - { host: a.test, port: 0 }\n")
        result = run("proxy", "--listen", "127.0.0.1:0", "--log-format", "json",
                     "--policy", invalid, timeout=10)
        assert result.returncode == 1, result
        assert "refusing to start" in result.stderr, result.stderr
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            result = run("proxy", "--listen", f"127.0.0.1:{taken}", "--log-format", "json",
                         timeout=10)
            assert result.returncode == 1, result
            assert f"127.0.0.1:{taken}" in result.stderr, result.stderr
        # A listen address that is not IP:PORT cannot be bound either: 1 (man page), or 2.
        for address in ("nonsense", "127.0.0.1:99999", "localhost:3128"):
            result = run("proxy", "--listen", address, "--log-format", "json", timeout=10)
            assert result.returncode in (1, 2), (address, result)
            assert address in result.stderr, (address, result.stderr)


if __name__ == "__main__":
    main()
