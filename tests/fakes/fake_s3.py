"""FAKE Amazon S3, for tests only (the tests never reach amazonaws.com).

``PUT``/``GET /<bucket>/<key>`` store and return objects when the request's SigV4 signature verifies with the REAL
secret key (recomputed here from the request as received, by fake_sts.verify_sigv4, independently of the
gateway's signer) and names the real access key id; 403 ``SignatureDoesNotMatch`` / ``InvalidAccessKeyId`` XML
otherwise, as S3 answers. Each request's headers are recorded in ``server.seen``. Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_sts import LoopbackServer, QuietHandler, verify_sigv4


class FakeS3(LoopbackServer):
    def __init__(self, access_key: str, secret: str) -> None:
        super().__init__(_Handler)
        self.access_key, self.secret = access_key, secret
        self.objects: dict[str, bytes] = {}
        self.seen: list[dict[str, str]] = []
        self.host = f"127.0.0.1:{self.server_address[1]}"


class _Handler(QuietHandler):
    server: FakeS3

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _check(self, body: bytes) -> bool:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append(headers)
        path, _, query = self.path.partition("?")
        if f"Credential={self.server.access_key}/" not in headers.get("authorization", ""):
            self._send(403, b"<Error><Code>InvalidAccessKeyId</Code></Error>")
            return False
        if not verify_sigv4(self.command, path, query, headers, body, self.server.secret):
            self._send(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
            return False
        return True

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._check(body):
            self.server.objects[self.path] = body
            self._send(200, b"")

    def do_GET(self):
        if self._check(b""):
            obj = self.server.objects.get(self.path)
            self._send(200, obj) if obj is not None else self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
