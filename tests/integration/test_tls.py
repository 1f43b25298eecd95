"""`openshell proxy` TLS interception end to end: the real binary, curl and python clients
(ssl sockets, http.client, urllib), local HTTPS/HTTP origins (https_origin.py) with a test PKI
(test_pki.py), one fresh network namespace per test (proxy_fixture.py).

Covers (proxy-spec §2.5, §2.7, §2.8 step 15, §3, §9): L7 rules inside intercepted tunnels
(read-only, deny rules, query matchers, audit), keep-alive with a decision per request and the
close after a denial, chunked uploads and every response framing, the Host/CONNECT authority
check, upstream certificate verification (untrusted issuer, wrong name, self-signed) that never
lets a request reach the origin, `tls: skip` and --tls-intercept auto|all, non-HTTP bytes on an
L7 endpoint, plaintext HTTP in a tunnel, the leaf cache (--leaf-cache-size), 200 concurrent
intercepted connections, --ca-out/--ca-bundle-out/--ca-cert/--ca-key, WebSocket upgrades, and
the CLI contract of the TLS flags.

Names map to 127.0.0.x in the namespace's /etc/hosts (NAMES); only loopback inside namespaces
the tests create is ever contacted.
"""
import atexit
import hashlib
import http.client
import itertools
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types

import test_pki
from https_origin import CHUNKED_BODY, CLOSE_BODY, OriginProcess, big_body
from proxy_fixture import (Lab, Response, assert_json_error, curl, open_tunnel, policy_yaml,
                           read_response, recv_until_close)
from tap import main, run, test

LOOPBACK = ["--allow-loopback-upstream"]
PROXY_CA_CN = "OpenShell Sandbox CA"
NAMES = {"api.test": "127.0.0.2", "a.test": "127.0.0.3", "b.test": "127.0.0.3",
         "c.test": "127.0.0.3", "plain.test": "127.0.0.4", "untrusted.test": "127.0.0.5",
         "wrong.test": "127.0.0.6", "stray.test": "127.0.0.7", "skip.test": "127.0.0.8",
         "l4.test": "127.0.0.9"}
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_pki = None
_curl_runs = itertools.count()


def pki():
    """The test PKI, made once per run: `root` (trusted through --upstream-ca) signs `origin`
    (every name in NAMES) and `wrong` (for elsewhere.test); `rogue` (trusted by nobody) signs
    `untrusted`; `stray` is self-signed; `custom` is a CA handed to the proxy with --ca-cert."""
    global _pki
    if _pki is None:
        directory = tempfile.mkdtemp(prefix="openshell-tls-pki-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        maker = test_pki.Pki(directory)
        root = maker.ca("root", "OpenShell Test Root CA")
        rogue = maker.ca("rogue", "Rogue Test CA")
        _pki = types.SimpleNamespace(
            root=root, rogue=rogue, origin=maker.leaf("origin", list(NAMES), root),
            wrong=maker.leaf("wrong", ["elsewhere.test"], root),
            untrusted=maker.leaf("untrusted", ["untrusted.test"], rogue),
            stray=maker.self_signed("stray", ["stray.test"]),
            custom=maker.ca("custom", "Custom Proxy Test CA"))
    return _pki


# ------------------------------------------------------------------------------------------------
# Lab, proxy and origins


class TlsLab(Lab):
    """A Lab whose /etc/hosts also names NAMES, with HTTPS origins and intercepting proxies."""

    def __enter__(self):
        super().__enter__()
        with open(self.hosts_path, "a") as hosts:
            hosts.writelines(f"{ip} {name}\n" for name, ip in NAMES.items())
        return self

    def https_origin(self, host="api.test", cert="origin", tls=True):
        """An https_origin.py process on NAMES[host]; `cert` names a pki() certificate."""
        pair = getattr(pki(), cert) if tls else None
        origin = OriginProcess(self.dir, f"{host}-{len(self.origins)}", NAMES[host],
                               pair.cert if pair else None, pair.key if pair else None)
        self.origins.append(origin)
        return origin

    def tls_proxy(self, policies, args=(), upstream_ca=True):
        """The proxy trusting pki().root upstream; `proxy.ca` is its --ca-out file."""
        index = len(self.proxies)
        ca_out = os.path.join(self.dir, f"proxy-{index}-ca.pem")
        argv = [*LOOPBACK, "--ca-out", ca_out, *args]
        if upstream_ca:
            argv += ["--upstream-ca", pki().root.cert]
        proxy = self.proxy(policy_yaml(policies), argv, policy_name=f"policy-{index}.yaml")
        wait_for_file(ca_out)
        proxy.ca = ca_out
        return proxy


def wait_for_file(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        assert time.monotonic() < deadline, f"{path} not written within {timeout}s"
        time.sleep(0.02)


def rest(host, port, access="read-only", enforcement="enforce", **extra):
    return {"host": host, "port": port, "protocol": "rest", "enforcement": enforcement,
            "access": access, **extra}


# ------------------------------------------------------------------------------------------------
# Clients


def tls_tunnel(proxy, host, port, cafile=None, timeout=5.0):
    """CONNECT host:port through the proxy, then TLS verifying against `cafile` only (default:
    the proxy's CA) with SNI `host`."""
    raw = open_tunnel(proxy.port, f"{host}:{port}", timeout)
    try:
        context = ssl.create_default_context(cafile=cafile or proxy.ca)
        return context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


def send(sock, method, target, authority, body=b"", extra=""):
    """One request on a keep-alive connection; returns the parsed response."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    sock.sendall((head + "\r\n").encode() + body)
    return read_response(sock, timeout=5, head_request=method == "HEAD")


def curl_via(proxy, url, *args, cacert=None):
    """curl through the proxy (CONNECT for https, and for http with -p) trusting only `cacert`
    (default: the proxy's CA). `.response` is the final response as `Response` (the proxy's
    answer to CONNECT and 1xx heads skipped), None when there was none; `.result` is curl's
    CompletedProcess."""
    index = next(_curl_runs)
    head_path = os.path.join(proxy.lab.dir, f"curl-{index}.head")
    body_path = os.path.join(proxy.lab.dir, f"curl-{index}.body")
    result = curl("-x", f"http://127.0.0.1:{proxy.port}", "--cacert", cacert or proxy.ca,
                  "-D", head_path, "-o", body_path, *args, url)
    heads = [h for h in read_bytes(head_path).split(b"\r\n\r\n") if h.startswith(b"HTTP/")
             and h[9:10] != b"1" and not h.lower().startswith(b"http/1.1 200 connection estab")]
    response = Response(heads[-1] + b"\r\n\r\n" + read_bytes(body_path)) if heads else None
    return types.SimpleNamespace(result=result, response=response)


def read_bytes(path):
    if not os.path.exists(path):
        return b""
    with open(path, "rb") as handle:
        return handle.read()


def names(cert):
    """(subject CN, issuer CN, SAN values) of a getpeercert() dict."""
    subject = dict(pair for rdn in cert["subject"] for pair in rdn)
    issuer = dict(pair for rdn in cert["issuer"] for pair in rdn)
    return (subject.get("commonName"), issuer.get("commonName"),
            [value for _, value in cert.get("subjectAltName", ())])


def leaf_pem(tls, directory, name):
    """The certificate the TLS peer presented, written as PEM; returns its path."""
    path = os.path.join(directory, f"{name}.pem")
    with open(path, "w") as handle:
        handle.write(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)))
    return path


def assert_l7_denied(response, key, method, path, reason="not permitted by policy"):
    """The in-tunnel L7 enforce denial (spec §9): 403, X-OpenShell-Policy, JSON with layer l7."""
    assert response.status == 403, response
    assert response.header("x-openshell-policy") == key, response
    assert response.header("content-type") == "application/json", response
    assert response.header("connection") == "close", response
    body = response.json()
    assert body["error"] == "policy_denied" and body["layer"] == "l7", body
    assert body["policy"] == key, body
    assert body["detail"] == f"{method} {path} {reason}", body


def echo(response):
    """The JSON an https_origin.py answers with (any route but /big, /chunked, /close, /ws)."""
    assert response is not None, "no HTTP response (the client failed: see its exit code)"
    assert response.status == 200, response
    return json.loads(getattr(response, "decoded", response.body))


# ------------------------------------------------------------------------------------------------
# L7 rules inside intercepted tunnels


@test
def intercepted_read_only_endpoint_relays_get_and_denies_post_before_the_origin():
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", port)]})

        got = curl_via(proxy, f"https://{authority}/echo?x=1")
        assert got.result.returncode == 0, got.result
        seen = echo(got.response)
        assert (seen["method"], seen["target"], seen["name"]) == ("GET", "/echo?x=1",
                                                                   origin.name), seen
        # The proxy opened its own TLS session upstream, with SNI = the CONNECT host.
        assert seen["sni"] == "api.test" and seen["tls"], seen

        got = curl_via(proxy, f"https://{authority}/echo", "-X", "POST", "--data-binary", "secret")
        assert_l7_denied(got.response, "api", "POST", "/echo")

        with tls_tunnel(proxy, "api.test", port) as tls:
            subject, issuer, sans = names(tls.getpeercert())
            assert (subject, issuer, sans) == ("api.test", PROXY_CA_CN, ["api.test"]), \
                tls.getpeercert()
            assert echo(send(tls, "GET", "/echo?py=1", authority))["target"] == "/echo?py=1"
            assert send(tls, "HEAD", "/echo", authority).status == 200
            denied = send(tls, "POST", "/items/1?q=2", authority, body=b"payload")
            assert_l7_denied(denied, "api", "POST", "/items/1")
            assert recv_until_close(tls) == b"", "bytes after the denial"

        assert origin.request_lines() == [("GET", "/echo?x=1"), ("GET", "/echo?py=1"),
                                          ("HEAD", "/echo")], origin.request_lines()
        proxy.wait_for(lambda e: e.get("message", "").startswith(
            f"L7_REQUEST deny POST {authority}/items/1"), what="L7 deny event")


@test
def deny_rules_and_query_matchers_decide_inside_the_tunnel():
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"guarded": [{
            "host": "api.test", "port": port, "protocol": "rest", "enforcement": "enforce",
            "rules": [{"allow": {"method": "GET", "path": "/search/**",
                                 "query": {"tag": {"any": ["alpha-*", "beta"]}}}},
                      {"allow": {"method": "*", "path": "/repos/**"}}],
            "deny_rules": [{"method": "PATCH", "path": "/repos/*/*/git/refs/**",
                            "query": {"force": "true"}},
                           {"method": "*", "path": "/repos/*/*/rulesets"}]}]})
        ref = "/repos/acme/app/git/refs/heads/main"
        allowed = [("GET", "/search/code?tag=alpha-1"),
                   ("GET", "/search/code?tag=alpha-1&tag=beta"),  # every value matches
                   ("GET", "/search/code?tag=alpha%2D2&other=x"),  # decoded; extras ignored
                   ("PATCH", ref + "?force=false"),
                   ("PATCH", ref),  # deny rule's key missing: it does not apply
                   ("GET", "/repos/acme/app/rulesets/1")]
        not_permitted = [("GET", "/search/code?tag=gamma", "/search/code"),
                         ("GET", "/search/code?tag=alpha-1&tag=gamma", "/search/code"),
                         ("GET", "/search/code", "/search/code"),  # allow key missing
                         ("GET", "/search/code?tag=beta+x", "/search/code"),  # '+' is a space
                         ("POST", "/search/code?tag=beta", "/search/code")]
        deny_rule = [("PATCH", ref + "?force=true", ref),
                     ("PATCH", ref + "?force=false&force=true", ref),  # one value is enough
                     ("DELETE", "/repos/acme/app/rulesets", "/repos/acme/app/rulesets"),
                     ("GET", "/repos/acme/app/./rulesets", "/repos/acme/app/rulesets")]
        with tls_tunnel(proxy, "api.test", port) as tls:  # allowed ones share one connection
            for method, target in allowed:
                seen = echo(send(tls, method, target, authority))
                assert (seen["method"], seen["target"]) == (method, target), seen
        for cases, reason in ((not_permitted, "not permitted by policy"),
                              (deny_rule, "blocked by deny rule")):
            for method, target, path in cases:
                with tls_tunnel(proxy, "api.test", port) as tls:
                    assert_l7_denied(send(tls, method, target, authority), "guarded", method,
                                     path, reason)
        # curl agrees, both ways.
        got = curl_via(proxy, f"https://{authority}{ref}?force=true", "-X", "PATCH")
        assert_l7_denied(got.response, "guarded", "PATCH", ref, "blocked by deny rule")
        got = curl_via(proxy, f"https://{authority}/search/code?tag=beta")
        assert echo(got.response)["method"] == "GET", got.result
        assert origin.request_lines() == allowed + [("GET", "/search/code?tag=beta")], \
            origin.request_lines()


@test
def audit_enforcement_forwards_violations_and_logs_them():
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"watched": [rest("api.test", port, enforcement="audit")]})
        got = curl_via(proxy, f"https://{authority}/echo", "-X", "POST", "--data-binary", "body")
        seen = echo(got.response)
        assert (seen["method"], seen["body_length"]) == ("POST", 4), seen
        # An audited violation does not close a keep-alive tunnel.
        with tls_tunnel(proxy, "api.test", port) as tls:
            assert echo(send(tls, "DELETE", "/echo/items/1", authority))["method"] == "DELETE"
            assert echo(send(tls, "GET", "/echo", authority))["method"] == "GET"
        assert [m for m, _ in origin.request_lines()] == ["POST", "DELETE", "GET"]
        for method, path in (("POST", "/echo"), ("DELETE", "/echo/items/1")):
            event = proxy.wait_for(lambda e, m=method, p=path: e.get("message", "").startswith(
                f"L7_REQUEST audit {m} {authority}{p}"), what=f"audit event for {method}")
            assert event["firewall_rule"]["name"] == "watched", event
        assert not any(e.get("message", "").startswith("L7_REQUEST deny") for e in proxy.events())


@test
def keep_alive_tunnel_decides_each_request_and_closes_after_a_denial():
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", port)]})

        # http.client through a CONNECT tunnel (set_tunnel), one TLS connection.
        context = ssl.create_default_context(cafile=proxy.ca)
        connection = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=5,
                                                 context=context)
        connection.set_tunnel("api.test", port)
        try:
            connection.request("GET", "/echo?first=1")
            first = connection.getresponse()
            assert first.status == 200, first.status
            assert json.loads(first.read())["headers"]["host"] == authority
            tls_session = connection.sock
            connection.request("POST", "/echo?second=1", body=b"payload")
            assert connection.sock is tls_session, "http.client reconnected"
            second = connection.getresponse()
            body = second.read()
            assert second.status == 403, (second.status, body)
            assert second.getheader("X-OpenShell-Policy") == "api", second.getheaders()
            assert second.will_close, second.getheaders()
            assert json.loads(body)["layer"] == "l7", body
        finally:
            connection.close()

        # The same on a raw TLS socket, which also sees the close itself.
        with tls_tunnel(proxy, "api.test", port) as tls:
            for index in range(3):
                assert echo(send(tls, "GET", f"/echo?n={index}", authority))["target"] \
                    == f"/echo?n={index}"
            assert_l7_denied(send(tls, "POST", "/echo", authority, body=b"x"), "api", "POST",
                             "/echo")
            assert recv_until_close(tls, timeout=3) == b""
        assert origin.request_lines() == [("GET", "/echo?first=1")] + [
            ("GET", f"/echo?n={i}") for i in range(3)], origin.request_lines()


# ------------------------------------------------------------------------------------------------
# Bodies and framing


@test
def chunked_upload_and_every_response_framing_cross_the_tunnel_intact():
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", port, access="full")]})
        body = random.Random(11).randbytes(1_500_000)  # past 1 MiB: curl also sends Expect
        upload = lab.write("upload.bin", "")
        with open(upload, "wb") as handle:
            handle.write(body)
        digest = hashlib.sha256(body).hexdigest()

        got = curl_via(proxy, f"https://{authority}/echo", "-H", "Transfer-Encoding: chunked",
                       "--data-binary", f"@{upload}")
        assert got.result.returncode == 0, got.result
        seen = echo(got.response)
        assert (seen["body_length"], seen["body_sha256"]) == (len(body), digest), seen
        assert seen["headers"].get("transfer-encoding") == "chunked", seen["headers"]

        with tls_tunnel(proxy, "api.test", port) as tls:
            # Uneven chunks, one with an extension, then more requests on the same connection.
            pieces = [body[:1], body[1:4097], body[4097:70000], body[70000:]]
            chunks = b"".join(f"{len(p):x}{';ext=1' if i == 1 else ''}\r\n".encode() + p + b"\r\n"
                              for i, p in enumerate(pieces)) + b"0\r\n\r\n"
            tls.sendall(f"POST /echo HTTP/1.1\r\nHost: {authority}\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n".encode() + chunks)
            seen = echo(read_response(tls, timeout=10))
            assert (seen["body_length"], seen["body_sha256"]) == (len(body), digest), seen
            response = send(tls, "GET", "/chunked", authority)
            assert response.status == 200 and response.decoded == CHUNKED_BODY, response
            response = send(tls, "GET", "/big?n=3000000", authority)
            assert response.status == 200 and response.decoded == big_body(3_000_000), \
                len(response.decoded)
            # EOF-delimited: the body ends when the origin closes, and so does the tunnel.
            response = send(tls, "GET", "/close", authority)
            assert response.status == 200 and response.decoded == CLOSE_BODY, response

        got = curl_via(proxy, f"https://{authority}/big?n=5000000")
        assert got.result.returncode == 0 and got.response.body == big_body(5_000_000), got.result
        got = curl_via(proxy, f"https://{authority}/close")
        assert got.result.returncode == 0 and got.response.body == CLOSE_BODY, got.result
        assert [t for _, t in origin.request_lines()] == [
            "/echo", "/echo", "/chunked", "/big?n=3000000", "/close", "/big?n=5000000", "/close"]


@test
def host_header_must_match_the_connect_authority():
    mismatch = {"error": "request_authority_mismatch",
                "message": "HTTP request authority does not match the authorized tunnel endpoint"}
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", port, access="full")],
                               "other": [rest("l4.test", port, access="full")]})
        for host in (f"l4.test:{port}", f"api.test:{port + 1}", "api.test", "evil.test"):
            with tls_tunnel(proxy, "api.test", port) as tls:
                response = send(tls, "GET", "/echo", host)
                assert_json_error(response, 403, mismatch)
                assert recv_until_close(tls, timeout=3) == b""
        # Case and a trailing dot do not matter.
        for host in (f"API.Test:{port}", f"api.test.:{port}"):
            with tls_tunnel(proxy, "api.test", port) as tls:
                assert echo(send(tls, "GET", f"/echo?host={host}", host))["method"] == "GET"
        got = curl_via(proxy, f"https://{authority}/echo", "-H", f"Host: l4.test:{port}")
        assert_json_error(got.response, 403, mismatch)
        assert [t for _, t in origin.request_lines()] == [
            f"/echo?host=API.Test:{port}", f"/echo?host=api.test.:{port}"], origin.requests()


# ------------------------------------------------------------------------------------------------
# Upstream verification, tls: skip, --tls-intercept


@test
def upstream_certificate_failures_never_reach_the_origin():
    with TlsLab() as lab:
        bad = {"untrusted.test": lab.https_origin("untrusted.test", "untrusted"),  # rogue CA
               "wrong.test": lab.https_origin("wrong.test", "wrong"),  # for elsewhere.test
               "stray.test": lab.https_origin("stray.test", "stray")}  # self-signed
        good = lab.https_origin("api.test")
        proxy = lab.tls_proxy({
            "bad": [rest(host, origin.port, access="full") for host, origin in bad.items()],
            "good": [rest("api.test", good.port, access="full")]})
        for host, origin in bad.items():
            authority = f"{host}:{origin.port}"
            got = curl_via(proxy, f"https://{authority}/echo")
            if got.response is not None:  # answered inside the tunnel: 502 naming the failure
                assert got.response.status == 502, (host, got.response)
                text = got.response.body.decode("utf-8", "replace").lower()
                assert "tls" in text or "certificate" in text, (host, got.response)
            else:  # or the client's handshake / connection fails
                assert got.result.returncode != 0, (host, got.result)
            try:
                with tls_tunnel(proxy, host, origin.port) as tls:
                    tls.sendall(f"GET /py HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
                    raw = recv_until_close(tls, timeout=5)
                assert raw == b"" or Response(raw).status == 502, (host, raw[:300])
            except (ssl.SSLError, ConnectionError):
                pass
            assert origin.requests() == [], (host, origin.requests())
            proxy.wait_for(lambda e, h=host: h in json.dumps(e) and "certificate"
                           in json.dumps(e).lower(), what=f"certificate failure event for {host}")
        # The proxy still serves a verified origin.
        got = curl_via(proxy, f"https://api.test:{good.port}/echo")
        assert echo(got.response)["sni"] == "api.test", got.result
        # Without --upstream-ca the test root is not trusted either (system roots only).
        plain = lab.tls_proxy({"good": [rest("api.test", good.port, access="full")]},
                              upstream_ca=False)
        got = curl_via(plain, f"https://api.test:{good.port}/echo")
        assert got.response is None or got.response.status == 502, got.response
        assert len(good.requests()) == 1, good.requests()


@test
def tls_skip_relays_the_origins_own_certificate_untouched():
    with TlsLab() as lab:
        origin = lab.https_origin("skip.test")
        authority = f"skip.test:{origin.port}"
        proxy = lab.tls_proxy({"skip": [{"host": "skip.test", "port": origin.port,
                                         "tls": "skip"}]}, ["--tls-intercept", "all"])
        got = curl_via(proxy, f"https://{authority}/echo", cacert=pki().root.cert)
        assert got.result.returncode == 0, got.result
        assert echo(got.response)["sni"] == "skip.test"
        # Our CA does not help: the certificate is the origin's.
        got = curl_via(proxy, f"https://{authority}/echo")
        assert got.result.returncode == 60 and got.response is None, got.result
        with tls_tunnel(proxy, "skip.test", origin.port, cafile=pki().root.cert) as tls:
            cert = tls.getpeercert()
            assert names(cert)[1] == "OpenShell Test Root CA", cert
            assert int(cert["serialNumber"], 16) == test_pki.serial(pki().origin.cert), cert
            # Nothing is inspected, not even under --tls-intercept all.
            assert echo(send(tls, "POST", "/echo", authority, body=b"abc"))["body_length"] == 3
        assert len(origin.requests()) == 2, origin.requests()


@test
def tls_intercept_auto_leaves_l4_endpoints_alone_and_all_intercepts_them():
    with TlsLab() as lab:
        origin = lab.https_origin("l4.test")
        port, authority = origin.port, f"l4.test:{origin.port}"
        policy = {"l4": [{"host": "l4.test", "port": port}]}
        auto = lab.tls_proxy(policy)
        everything = lab.tls_proxy(policy, ["--tls-intercept", "all"])

        with tls_tunnel(auto, "l4.test", port, cafile=pki().root.cert) as tls:
            cert = tls.getpeercert()
            assert int(cert["serialNumber"], 16) == test_pki.serial(pki().origin.cert), cert
            assert echo(send(tls, "GET", "/echo", authority))["sni"] == "l4.test"
        got = curl_via(auto, f"https://{authority}/echo", cacert=pki().root.cert)
        assert got.result.returncode == 0, got.result

        with tls_tunnel(everything, "l4.test", port) as tls:
            assert names(tls.getpeercert())[:2] == ("l4.test", PROXY_CA_CN), tls.getpeercert()
            # Intercepted but still L4: no L7 rules, so a POST passes.
            assert echo(send(tls, "POST", "/echo", authority, body=b"abc"))["body_length"] == 3
        got = curl_via(everything, f"https://{authority}/echo")
        assert got.result.returncode == 0 and echo(got.response)["sni"] == "l4.test", got.result
        got = curl_via(everything, f"https://{authority}/echo", cacert=pki().root.cert)
        assert got.result.returncode == 60, got.result
        assert len(origin.requests()) == 4, origin.requests()


# ------------------------------------------------------------------------------------------------
# What the tunnel carries


@test
def non_http_bytes_on_an_l7_endpoint_get_403_unsupported_l7_protocol():
    with TlsLab() as lab:
        origin = lab.https_origin()
        authority = f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", origin.port)]})
        with open_tunnel(proxy.port, authority) as sock:
            sock.sendall(b"\x00\x01hello junk\r\n\r\n")
            response = Response(recv_until_close(sock))
        assert_json_error(response, 403, {
            "error": "unsupported_l7_protocol",
            "detail": "Unsupported tunnel protocol for L7-inspected endpoint"})
        assert origin.requests() == [], origin.requests()
        with tls_tunnel(proxy, "api.test", origin.port) as tls:
            assert send(tls, "GET", "/echo", authority).status == 200
        assert proxy.alive()


@test
def plaintext_http_inside_a_tunnel_is_inspected_too():
    with TlsLab() as lab:
        origin = lab.https_origin("plain.test", tls=False)
        port, authority = origin.port, f"plain.test:{origin.port}"
        proxy = lab.tls_proxy({"plain": [rest("plain.test", port)]})
        with open_tunnel(proxy.port, authority) as sock:
            assert echo(send(sock, "GET", "/echo?a=1", authority))["tls"] is None
            assert_l7_denied(send(sock, "POST", "/x", authority, body=b"abc"), "plain", "POST",
                             "/x")
            assert recv_until_close(sock, timeout=3) == b""
        with open_tunnel(proxy.port, authority) as sock:  # POST as the very first bytes
            sock.sendall(f"POST /x HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\n\r\n"
                         .encode())
            assert_l7_denied(Response(recv_until_close(sock)), "plain", "POST", "/x")
        got = curl_via(proxy, f"http://{authority}/echo", "-p")
        assert echo(got.response)["method"] == "GET", got.result
        got = curl_via(proxy, f"http://{authority}/x", "-p", "--data-binary", "abc")
        assert_l7_denied(got.response, "plain", "POST", "/x")
        assert origin.request_lines() == [("GET", "/echo?a=1"), ("GET", "/echo")], \
            origin.request_lines()


@test
def websocket_upgrade_switches_the_tunnel_to_raw_bytes():
    with TlsLab() as lab:
        secure = lab.https_origin()
        plain = lab.https_origin("plain.test", tls=False)
        proxy = lab.tls_proxy({"ws": [rest("api.test", secure.port),
                                      rest("plain.test", plain.port)]})
        for origin, host in ((secure, "api.test"), (plain, "plain.test")):
            authority = f"{host}:{origin.port}"
            sock = (tls_tunnel(proxy, host, origin.port) if origin.tls
                    else open_tunnel(proxy.port, authority))
            with sock:
                response = send(sock, "GET", "/ws", authority,
                                extra="Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n")
                assert response.status == 101, response
                assert response.header("sec-websocket-accept") == \
                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", response
                # After the switch nothing is parsed: a denied-looking request is just bytes.
                payload = (b"\x81\x05hello" + b"POST /x HTTP/1.1\r\nHost: evil\r\n\r\n"
                           + random.Random(5).randbytes(100_000))
                sock.sendall(payload)
                echoed = b""
                sock.settimeout(10)
                while len(echoed) < len(payload):
                    chunk = sock.recv(65536)
                    assert chunk, f"tunnel closed after {len(echoed)} echoed bytes"
                    echoed += chunk
                assert echoed == payload
            assert origin.request_lines() == [("GET", "/ws")], origin.request_lines()


# ------------------------------------------------------------------------------------------------
# Leaves, the CA, load


@test
def leaf_cache_size_2_evicts_and_every_leaf_names_its_host():
    with TlsLab() as lab:
        origin = lab.https_origin("a.test")  # a.test, b.test and c.test share 127.0.0.3
        port = origin.port
        proxy = lab.tls_proxy({"abc": [rest(host, port, access="full")
                                       for host in ("a.test", "b.test", "c.test")]},
                              ["--leaf-cache-size", "2"])
        leaves = []
        for host in ("a.test", "b.test", "c.test", "a.test", "c.test"):
            with tls_tunnel(proxy, host, port) as tls:
                cert = tls.getpeercert()
                assert names(cert) == (host, PROXY_CA_CN, [host]), cert
                leaves.append(tls.getpeercert(binary_form=True))
                seen = echo(send(tls, "GET", "/echo", f"{host}:{port}"))
                assert (seen["sni"], seen["headers"]["host"]) == (host, f"{host}:{port}"), seen
        a1, b1, c1, a2, c2 = leaves
        assert len({a1, b1, c1}) == 3
        assert a2 != a1, "a.test's leaf was served again although 2 newer hosts displaced it"
        assert c2 == c1, "c.test's leaf is not cached at all"
        got = curl_via(proxy, f"https://b.test:{port}/echo", "-v")
        assert echo(got.response)["sni"] == "b.test", got.result
        assert b"subject: CN=b.test" in got.result.stderr, got.result.stderr
        assert len(origin.requests()) == 6


@test
def two_hundred_concurrent_intercepted_connections_all_succeed():
    count = 200
    with TlsLab() as lab:
        origin = lab.https_origin()
        port, authority = origin.port, f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", port)]})
        start = threading.Event()
        results = [None] * count

        def client(index):
            try:
                start.wait(10)
                with tls_tunnel(proxy, "api.test", port, timeout=30) as tls:
                    response = send(tls, "GET", f"/echo?i={index}", authority,
                                    extra="Connection: close\r\n")
                    results[index] = (response.status, echo(response)["query"])
            except Exception as error:  # noqa: BLE001 - reported below
                results[index] = repr(error)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        start.set()
        for thread in threads:
            thread.join(timeout=max(0.1, began + 90 - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "clients still running after 90 s"
        failures = [(i, r) for i, r in enumerate(results) if r != (200, {"i": [str(i)]})]
        assert not failures, f"{len(failures)} failed, e.g. {failures[:5]}"
        assert sorted(t for _, t in origin.request_lines()) == sorted(
            f"/echo?i={i}" for i in range(count))
        assert proxy.alive()


@test
def ca_out_is_a_p256_ca_and_the_bundle_carries_it_after_the_system_roots():
    with TlsLab() as lab:
        origin = lab.https_origin()
        authority = f"api.test:{origin.port}"
        bundle = os.path.join(lab.dir, "bundle.pem")
        proxy = lab.tls_proxy({"api": [rest("api.test", origin.port)]},
                              ["--ca-bundle-out", bundle])
        pem = read_bytes(proxy.ca).decode()
        assert pem.count("BEGIN CERTIFICATE") == 1 and "PRIVATE KEY" not in pem, pem
        text = test_pki.text(proxy.ca)
        for needle in ("CA:TRUE", "NIST CURVE: P-256", "Signature Algorithm: ecdsa-with-SHA256",
                       "Certificate Sign"):
            assert needle in text, (needle, text)
        subject = [line for line in text.splitlines() if line.strip().startswith("Subject:")]
        assert len(subject) == 1 and "CN = OpenShell Sandbox CA" in subject[0], text
        assert test_pki.verify(proxy.ca, proxy.ca), "the CA is not self-signed"

        wait_for_file(bundle)
        combined = read_bytes(bundle).decode()
        assert combined.rstrip().endswith(pem.rstrip()), combined[-2000:]
        if os.path.exists(SYSTEM_BUNDLE):
            assert combined.startswith(read_bytes(SYSTEM_BUNDLE).decode()), "system roots missing"

        # Leaves chain to it (and to nothing else we know).
        with tls_tunnel(proxy, "api.test", origin.port) as tls:
            leaf = leaf_pem(tls, lab.dir, "leaf")
        assert test_pki.verify(proxy.ca, leaf)
        assert not test_pki.verify(pki().root.cert, leaf)
        leaf_text = test_pki.text(leaf)
        assert "NIST CURVE: P-256" in leaf_text and "DNS:api.test" in leaf_text, leaf_text

        # A client configured the way the sandbox configures its children: SSL_CERT_FILE.
        script = ("import sys, urllib.request; "
                  "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SSL_CERT_FILE": bundle,
               "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}"}
        result = subprocess.run([sys.executable, "-c", script, f"https://{authority}/echo"],
                                capture_output=True, text=True, timeout=20, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["sni"] == "api.test", result.stdout

        # A new proxy, a new CA.
        other = lab.tls_proxy({"api": [rest("api.test", origin.port)]})
        assert read_bytes(other.ca).decode() != pem


@test
def given_ca_cert_and_key_sign_the_leaves():
    custom = pki().custom
    with TlsLab() as lab:
        origin = lab.https_origin()
        authority = f"api.test:{origin.port}"
        proxy = lab.tls_proxy({"api": [rest("api.test", origin.port)]},
                              ["--ca-cert", custom.cert, "--ca-key", custom.key])
        fingerprint = [test_pki.openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", path)
                       for path in (proxy.ca, custom.cert)]
        assert fingerprint[0] == fingerprint[1], fingerprint
        got = curl_via(proxy, f"https://{authority}/echo", cacert=custom.cert)
        assert got.result.returncode == 0 and echo(got.response)["method"] == "GET", got.result
        with tls_tunnel(proxy, "api.test", origin.port, cafile=custom.cert) as tls:
            assert names(tls.getpeercert())[:2] == ("api.test", "Custom Proxy Test CA")
            leaf = leaf_pem(tls, lab.dir, "leaf")
        assert test_pki.verify(custom.cert, leaf)


# ------------------------------------------------------------------------------------------------
# CLI contract of the TLS flags


TLS_FLAGS = ["--upstream-ca", "--ca-out", "--ca-bundle-out", "--ca-cert", "--ca-key",
             "--tls-intercept", "--leaf-cache-size"]


@test
def proxy_help_lists_the_tls_flags_bad_values_exit_2_and_bad_files_exit_1():
    result = run("proxy", "--help")
    assert result.returncode == 0, result
    for flag in TLS_FLAGS:
        assert flag in result.stdout, (flag, result.stdout)
    custom = pki().custom
    with TlsLab() as lab:
        listen = ["--listen", "127.0.0.1:0", "--log-format", "json"]
        for args in (["--tls-intercept", "sometimes"], ["--tls-intercept"],
                     ["--leaf-cache-size", "abc"], ["--leaf-cache-size", "-1"],
                     ["--ca-cert", custom.cert], ["--ca-key", custom.key],
                     ["--upstream-ca", "/nonexistent/ca.pem"],
                     ["--ca-cert", "/nonexistent/ca.pem", "--ca-key", custom.key]):
            result = run("proxy", *listen, *args, timeout=10)
            assert result.returncode == 2, (args, result.returncode, result.stderr)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and "--help" in lines[0], (args, result.stderr)
        # Files that exist but cannot be used: the proxy refuses to start (exit 1).
        garbage = lab.write("garbage.pem", "not a certificate\n")
        for args in (["--ca-cert", custom.cert, "--ca-key", pki().root.key],  # key mismatch
                     ["--ca-cert", garbage, "--ca-key", custom.key],
                     ["--upstream-ca", garbage]):
            result = run("proxy", *listen, *args, timeout=10)
            assert result.returncode == 1, (args, result.returncode, result.stderr)
            assert result.stderr.strip(), args


if __name__ == "__main__":
    main()
