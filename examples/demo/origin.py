#!/usr/bin/env python3
"""The demo's local HTTPS origin (examples/demo/run.sh): python3's standard library only.

    origin.py ADDRESS PORT CERT KEY

Prints `ready` once listening. GET /hello answers a greeting; any other request is answered
with what the origin saw, so a request the proxy should have refused would show.
"""
import http.server
import ssl
import sys

GREETING = b"hello from the demo origin\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: the demo prints what the agent gets
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.command == "GET" and self.path == "/hello":
            body = GREETING
        else:
            body = f"the origin saw {self.command} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = answer


def main():
    address, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
