"""PROXY v2 identities on the standalone proxy (DESIGN.md "Network path inside a sandbox"): with
--identity-key-file every connection must open with an authenticated header naming the process,
and `binaries` rules are decided against it; without the flag a header is refused.

The headers here are built by this file's own encoder (haproxy proxy-protocol.txt §2.2 plus the
TLVs of include/openshell/core/proxy_protocol.hpp), independent of the C++ one. One fresh network
namespace per test (proxy_fixture.py); only loopback is contacted.
"""
import hashlib
import hmac
import json
import socket
import struct
import time

from proxy_fixture import Lab, connect_request, read_response, recv_until_close
from tap import main, test

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
        from tap import run
        result = run("proxy", "--listen", "127.0.0.1:0", "--identity-key-file", key_file)
        assert result.returncode == 1, result
        assert "identity key too short" in result.stderr, result.stderr


if __name__ == "__main__":
    main()
