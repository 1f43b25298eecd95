"""PROXY v2 identities on the standalone proxy (DESIGN.md "Network path inside a sandbox"): with
--identity-key-file every TCP connection must open with an authenticated header naming the
process, and `binaries` rules are decided against it; without the flag a header on TCP is refused.
On a `--listen unix:PATH` listener the header needs no HMAC (the socket file's mode, 0600 by
default, is the trust boundary: whoever can connect can claim any binary), is optional, and an
HMAC it carries is still checked when the proxy has a key.

The headers here are built by this file's own encoder (haproxy proxy-protocol.txt §2.2 plus the
TLVs of include/openshell/core/proxy_protocol.hpp), independent of the C++ one. One fresh network
namespace per test (proxy_fixture.py); only loopback is contacted.
"""
import hashlib
import hmac
import json
import os
import shlex
import socket
import stat
import struct
import subprocess
import time

from proxy_fixture import Lab, connect_request, read_response, recv_until_close
from tap import BIN, main, run, test

LOOPBACK = ["--allow-loopback-upstream"]
KEY = b"integration-test-identity-key-0123456789"
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


def proxy_header(exe, pid=4242, key=KEY, timestamp_ms=None, sha256=b"\x11" * 32):
    """A PROXY v2 TCP4 header from 127.0.0.1:40000 to 127.0.0.1:3128 with identity TLVs."""
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    addresses = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!HH", 40000, 3128)
    tlvs = (tlv(0xE0, struct.pack("!I", pid)) + tlv(0xE1, exe.encode()) + tlv(0xE2, sha256)
            + tlv(0xE3, struct.pack("!Q", timestamp_ms)))
    if key is None:
        body = addresses + tlvs
        return SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
    body = addresses + tlvs + tlv(0xE4, b"\x00" * 32)
    header = SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
    mac = hmac.new(key, header, hashlib.sha256).digest()
    return header[:-32] + mac


def curl_only_policy(port):
    return (f"version: 1\nnetwork_policies:\n  local:\n    endpoints:\n"
            f"      - {{host: origin.test, port: {port}}}\n"
            f"    binaries:\n      - {{path: /usr/bin/curl}}\n")


def identity_proxy(lab, extra=()):
    origin = lab.origin()
    key_file = lab.write("identity.key", KEY.decode() + "\n")
    proxy = lab.proxy(curl_only_policy(origin.port), [*LOOPBACK, "--identity-key-file", key_file, *extra])
    return origin, proxy


def connect_as(proxy, header, authority):
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(header + connect_request(authority))
    return sock


def connect_head(sock):
    """The proxy's answer to the CONNECT: (status, body after the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"proxy closed the CONNECT: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


@test
def binaries_rules_use_the_identity_of_an_authenticated_header():
    with Lab() as lab:
        origin, proxy = identity_proxy(lab)
        authority = f"origin.test:{origin.port}"
        with connect_as(proxy, proxy_header("/usr/bin/curl"), authority) as sock:
            assert connect_head(sock)[0] == 200
            sock.sendall(f"GET /a HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
                         .encode())
            assert b"200 OK" in recv_until_close(sock, 5.0)
        with connect_as(proxy, proxy_header("/usr/bin/wget"), authority) as sock:
            response = read_response(sock)
            assert response.status == 403, response
            body = json.loads(response.body)
            assert body["error"] == "policy_denied", body
            assert "wget" in body.get("reason", ""), body
        denied = proxy.wait_for(lambda e: e.get("status") == "Failure"
                                and "CONNECT denied" in e.get("message", ""), what="denial")
        process = denied["actor"]["process"]
        assert process["name"] == "/usr/bin/wget" and process["pid"] == 4242, denied
        assert process["file"]["hashes"][0]["value"] == "11" * 32, denied
        assert origin.request_count() == 1


@test
def bad_headers_are_refused_and_logged():
    with Lab() as lab:
        origin, proxy = identity_proxy(lab)
        authority = f"origin.test:{origin.port}"
        cases = {
            "wrong key": proxy_header("/usr/bin/curl", key=b"another-key-another-key-0000"),
            "no hmac": proxy_header("/usr/bin/curl", key=None),
            "replayed": proxy_header("/usr/bin/curl", timestamp_ms=int(time.time() * 1000)
                                     - 10 * 60 * 1000),
            "no header": b"",
        }
        for name, header in cases.items():
            with connect_as(proxy, header, authority) as sock:
                assert recv_until_close(sock, 15.0) == b"", name
        refused = [e for e in proxy.events() if "PROXY header refused" in e.get("message", "")]
        assert len(refused) >= 3, proxy.log_text()
        # A tampered byte anywhere in the header (here: the exe path) breaks the HMAC.
        tampered = bytearray(proxy_header("/usr/bin/curl"))
        tampered[tampered.index(b"/usr/bin/curl") + 9] ^= 0x01
        with connect_as(proxy, bytes(tampered), authority) as sock:
            assert recv_until_close(sock, 5.0) == b""
        assert origin.request_count() == 0
        assert proxy.alive()


@test
def a_proxy_without_the_key_refuses_any_proxy_header():
    with Lab() as lab:
        origin = lab.origin()
        proxy = lab.proxy(curl_only_policy(origin.port), LOOPBACK)
        with connect_as(proxy, proxy_header("/usr/bin/curl"), f"origin.test:{origin.port}") as sock:
            assert recv_until_close(sock, 5.0) == b""
        event = proxy.wait_for(lambda e: "PROXY header refused" in e.get("message", ""),
                               what="refusal")
        assert "--identity-key-file" in event["message"], event
        # Without identities `binaries` are not evaluated, so a plain CONNECT still works.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(connect_request(f"origin.test:{origin.port}"))
            assert connect_head(sock)[0] == 200


@test
def short_identity_key_is_a_start_error():
    with Lab() as lab:
        key_file = lab.write("short.key", "tooshort\n")
        result = run("proxy", "--listen", "127.0.0.1:0", "--identity-key-file", key_file)
        assert result.returncode == 1, result
        assert "identity key too short" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------
# --listen unix:PATH

# For `openshell run`'s sandbox: the system's tools readable, a private writable /tmp.
RUN_POLICY = ("version: 1\nfilesystem_policy:\n  include_workdir: false\n"
              "  read_only: [/usr, /lib, /etc, /proc, /dev/urandom]\n"
              "  read_write: [/tmp, /dev/null]\nlandlock:\n  compatibility: best_effort\n")


def unix_proxy(lab, policy_text, extra=(), name="proxy.sock"):
    """A proxy listening on TCP (first, for the fixture's `port`) and on unix:<lab>/<name>."""
    path = os.path.join(lab.dir, name)
    proxy = lab.proxy(policy_text, [*LOOPBACK, *extra], listen=("127.0.0.1:0", f"unix:{path}"))
    assert proxy.addresses[1] == f"unix:{path}", proxy.addresses
    return proxy, path


def unix_connect(path, data):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(data)
    return sock


def refusals(proxy):
    return [e for e in proxy.events() if "PROXY header refused" in e.get("message", "")]


def wait_refusals(proxy, count):
    proxy.wait_for(lambda _: len(refusals(proxy)) >= count, what=f"{count} PROXY refusals")
    return refusals(proxy)


def run_over_unix(lab, path, script):
    """`openshell run --network proxy:unix:PATH -- /bin/sh -c SCRIPT` under RUN_POLICY."""
    policy = lab.write("run-policy.yaml", RUN_POLICY)
    return subprocess.run([BIN, "run", "--log-format", "text", "--network", f"proxy:unix:{path}",
                           "--policy", policy, "--", "/bin/sh", "-c", script],
                          capture_output=True, text=True, errors="replace", timeout=60, cwd="/")


@test
def run_over_a_unix_socket_decides_by_the_sandboxed_binary_without_a_key():
    with Lab() as lab:
        origin = lab.origin()
        proxy, path = unix_proxy(lab, curl_only_policy(origin.port))
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, oct(os.lstat(path).st_mode)
        listening = [e for e in proxy.events() if e.get("unmapped", {}).get("listen") ==
                     f"unix:{path}"]
        assert listening and listening[0]["unmapped"].get("socket_mode") == "0600", listening
        url = f"http://origin.test:{origin.port}/from-sandbox"
        probe = ("import urllib.request, urllib.error\n"
                 "try:\n"
                 f"    print('python3=%d' % urllib.request.urlopen({url!r}, timeout=10).status)\n"
                 "except urllib.error.HTTPError as e:\n"
                 "    print('python3=%d' % e.code)\n")
        script = (f"curl -sS --max-time 10 -o /dev/null -w 'curl=%{{http_code}}\\n' {url}; "
                  f"/usr/bin/python3 -c {shlex.quote(probe)}")
        result = run_over_unix(lab, path, script)
        assert result.returncode == 0, result
        assert result.stdout.splitlines() == ["curl=200", "python3=403"], result
        assert origin.request_count() == 1
        denied = proxy.wait_for(lambda e: e.get("status") == "Failure" and "actor" in e
                                and "FORWARD blocked" in e.get("message", ""),
                                what="python3's denial")
        process = denied["actor"]["process"]
        # /usr/bin/python3 is a symlink; the process's exe is the file it names (python3.x).
        assert process["name"].startswith("/usr/bin/python3"), denied
        assert process["pid"] > 1, denied
        with open(process["name"], "rb") as binary:
            digest = hashlib.sha256(binary.read()).hexdigest()
        assert process["file"]["hashes"][0]["value"] == digest, denied
        assert not refusals(proxy), proxy.log_text()


@test
def ancestor_rules_work_across_the_split_topology():
    """The relay sends the caller's ancestors (the sandbox's init left out) in the header, so a
    rule naming bash admits curl run by bash, and not curl run by sh, nor openshell itself."""
    with Lab() as lab:
        origin = lab.origin()
        own_binary = os.path.realpath(BIN)
        policy_text = (f"version: 1\nnetwork_policies:\n  via_bash:\n    endpoints:\n"
                       f"      - {{host: origin.test, port: {origin.port}}}\n"
                       f"    binaries:\n      - {{path: /usr/bin/bash}}\n"
                       f"      - {{path: {own_binary}}}\n")
        proxy, path = unix_proxy(lab, policy_text)
        url = f"http://origin.test:{origin.port}/tree"
        get = f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' {url}"
        # `; true` keeps each shell from exec'ing curl in its place: curl is then its child.
        script = f"/bin/bash -c {shlex.quote(get + '; true')}; /bin/sh -c {shlex.quote(get + '; true')}"
        result = run_over_unix(lab, path, script)
        assert result.returncode == 0, result
        assert result.stdout.split() == ["200", "403"], result
        assert origin.request_count() == 1


@test
def unix_socket_permissions_are_the_boundary_and_bad_headers_are_refused():
    with Lab() as lab:
        origin = lab.origin()
        key_file = lab.write("identity.key", KEY.decode() + "\n")
        proxy, path = unix_proxy(lab, curl_only_policy(origin.port),
                                 ["--identity-key-file", key_file])
        authority = f"origin.test:{origin.port}"
        get = f"GET /a HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()

        def tunnel_works(header):
            with unix_connect(path, header + connect_request(authority)) as sock:
                assert connect_head(sock)[0] == 200
                sock.sendall(get)
                assert b"200 OK" in recv_until_close(sock, 5.0)

        # Anyone who can open the socket (0600: only the proxy's user) can claim any binary: a
        # header built here, without an HMAC, is taken as the process identity.
        tunnel_works(proxy_header("/usr/bin/curl", key=None))
        with unix_connect(path, proxy_header("/usr/bin/wget", pid=77, key=None)
                          + connect_request(authority)) as sock:
            response = read_response(sock)
            assert response.status == 403, response
            assert "wget" in json.loads(response.body).get("reason", ""), response
        denied = proxy.wait_for(lambda e: e.get("status") == "Failure"
                                and "CONNECT denied" in e.get("message", ""), what="denial")
        assert denied["actor"]["process"]["name"] == "/usr/bin/wget", denied
        assert denied["actor"]["process"]["pid"] == 77, denied
        assert denied["src_endpoint"]["ip"] == "unix", denied
        # A header the sender signed is checked with the proxy's key: right key fine, wrong refused.
        tunnel_works(proxy_header("/usr/bin/curl"))
        # A client without a header is served, with no identity (`binaries` not evaluated).
        tunnel_works(b"")
        served = origin.request_count()
        assert served == 3, served

        bad = {
            "wrong key": proxy_header("/usr/bin/curl", key=b"another-key-another-key-0000"),
            "bad version": SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + b"\0" * 12,
            "truncated tlv": (SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 14)
                              + b"\0" * 12 + b"\xe1\x00"),
            "no identity": (SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 12)
                            + b"\0" * 12),
        }
        for name, header in bad.items():
            with unix_connect(path, header + connect_request(authority)) as sock:
                assert recv_until_close(sock, 5.0) == b"", name
        # Half a header, then the client stops sending: refused, and said so.
        with unix_connect(path, proxy_header("/usr/bin/curl", key=None)[:20]) as sock:
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_close(sock, 5.0) == b""
        refused = wait_refusals(proxy, len(bad) + 1)
        reasons = " | ".join(e["message"] for e in refused)
        for fragment in ("HMAC mismatch", "version/command", "truncated TLV",
                         "no process identity", "truncated PROXY header"):
            assert fragment in reasons, (fragment, reasons)
        assert all(e["src_endpoint"]["ip"] == "unix" for e in refused), refused
        # TCP keeps its rules on the same proxy: a header without an HMAC is refused there.
        with connect_as(proxy, proxy_header("/usr/bin/curl", key=None), authority) as sock:
            assert recv_until_close(sock, 5.0) == b""
        wait_refusals(proxy, len(bad) + 2)
        # And the unix listener keeps serving.
        tunnel_works(proxy_header("/usr/bin/curl", key=None))
        assert origin.request_count() == served + 1
        assert proxy.alive()


@test
def unix_socket_file_stale_replaced_foreign_refused_removed_at_shutdown():
    with Lab() as lab:
        origin = lab.origin()
        path = os.path.join(lab.dir, "stale.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()  # the file stays behind, as after a crash
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        proxy, path = unix_proxy(lab, curl_only_policy(origin.port), name="stale.sock")
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        with unix_connect(path, connect_request(f"origin.test:{origin.port}")) as sock:
            assert connect_head(sock)[0] == 200
        # The path is taken now: a second proxy refuses it, and the first keeps its socket.
        result = run("proxy", "--listen", f"unix:{path}", timeout=10)
        assert result.returncode == 1, result
        assert path in result.stderr and "live socket" in result.stderr, result.stderr
        assert proxy.alive() and os.path.exists(path)
        assert proxy.stop() == 0
        assert not os.path.lexists(path), "socket file left after SIGTERM"

        regular = lab.write("regular", "not a socket\n")
        result = run("proxy", "--listen", f"unix:{regular}", timeout=10)
        assert result.returncode == 1, result
        assert regular in result.stderr and "not a socket" in result.stderr, result.stderr
        with open(regular) as handle:
            assert handle.read() == "not a socket\n"
        result = run("proxy", "--listen", "unix:relative.sock", timeout=10)
        assert result.returncode == 1 and "absolute" in result.stderr, result

        wide, wide_path = unix_proxy(lab, None, ["--listen-mode", "0660"], name="wide.sock")
        assert stat.S_IMODE(os.lstat(wide_path).st_mode) == 0o660
        assert wide.stop() == 0 and not os.path.lexists(wide_path)
        result = run("proxy", "--listen-mode", "999", "--listen", f"unix:{wide_path}", timeout=10)
        assert result.returncode == 2, result


if __name__ == "__main__":
    main()
