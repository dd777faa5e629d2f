#!/usr/bin/env python3
"""FAKE Telegram Bot API, for tests only (the tests never reach api.telegram.org).

Answers like the Bot API: the token is the path segment ``/bot<TOKEN>/<method>``; ``getMe`` and ``getUpdates``
answer ``{"ok": true, ...}`` for the one real token, 401 ``Unauthorized`` for any other token, 404 for other
methods (without quoting the path, like the real API). One method the real API does not have, ``redirectMe``,
answers 302 with a ``Location`` that quotes the path it received (token included): the worst case of a bound host
that reflects the request into a response header. Every request is recorded (method, path, headers) in
``server.seen``.

Standard library only. As a program: ``fake_telegram.py --cert C --key K --token-file F [--port P] [--log FILE]``;
``--log`` appends a JSON line per request (method, the path with the real token written ``<TOKEN>``, and ``token``:
``real``, ``other`` or ``none``), so a test can show what arrived without ever printing the token.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOT = {"id": 7000000001, "is_bot": True, "first_name": "clawfleet fake", "username": "clawfleet_fake_bot"}


def log_line(token: str, method: str, path: str) -> str:
    """One request as a JSON line that never holds the real token (see the module's docstring)."""
    segment = path.partition("?")[0].split("/")[1:2]
    seen = segment[0][3:] if segment and segment[0].startswith("bot") else None
    kind = "none" if seen is None else "real" if seen == token else "other"
    return json.dumps({"method": method, "path": path.replace(token, "<TOKEN>"), "token": kind})


def make_handler(token: str, log: Path | None = None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def _json(self, status: int, body: dict, location: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if location is not None:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.server.seen.append(  # type: ignore[attr-defined]
                {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
            )
            if log is not None:
                with log.open("a") as f:
                    f.write(log_line(token, self.command, self.path) + "\n")
            path = self.path.partition("?")[0]
            parts = path.split("/")
            if len(parts) != 3 or parts[0] != "" or not parts[1].startswith("bot"):
                self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                return
            if parts[1][3:] != token:
                self._json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            method = parts[2]
            if method == "getMe":
                self._json(200, {"ok": True, "result": BOT})
            elif method == "getUpdates":
                self._json(200, {"ok": True, "result": []})
            elif method == "redirectMe":  # not in the real API: a reflecting redirect (see the docstring)
                self._json(302, {"ok": False, "error_code": 302, "description": "Found"}, location=f"{path}/")
            else:
                self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})

        do_GET = do_POST = _answer

    return Handler


def make_server(
    token: str, cert: Path, key: Path, host: str = "127.0.0.1", port: int = 0, log: Path | None = None
) -> ThreadingHTTPServer:
    """A TLS server (not yet serving) whose ``seen`` list records every request (and ``log``, if given)."""
    httpd = ThreadingHTTPServer((host, port), make_handler(token, log))
    httpd.daemon_threads = True
    httpd.seen = []  # type: ignore[attr-defined]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    return httpd


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fake-telegram")
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--log", type=Path, help="append a JSON line per request, the token written <TOKEN>")
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip()
    make_server(token, args.cert, args.key, args.host, args.port, args.log).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
