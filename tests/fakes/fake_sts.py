"""FAKE AWS STS ``AssumeRole``, for tests only (the tests never reach sts.amazonaws.com).

``POST /`` with ``Action=AssumeRole`` answers STS's XML (``AssumeRoleResponse/AssumeRoleResult/Credentials``)
when the request's SigV4 signature verifies with the SOURCE secret key (recomputed here, independently of the
gateway's signer, from the request as received) and the role ARN is the expected one; 403
``SignatureDoesNotMatch`` / ``AccessDenied`` XML otherwise. ``server.mode = "garbage"`` answers 200 with an XML
document that holds no credentials, ``"entity"`` one with a DOCTYPE (entity expansion). Each request's form and
headers are recorded in ``server.seen``. Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_sigv4(method: str, path: str, query: str, headers: dict[str, str], body: bytes, secret: str) -> bool:
    """Recompute an AWS4-HMAC-SHA256 signature from what arrived (single-encoded path, as S3 and '/')."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    _key, date, region, service, _ = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return False
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
        return False
    pairs = sorted(
        tuple(quote(x, safe="-_.~") for x in (k, v))
        for k, vs in parse_qs(query, keep_blank_values=True).items()
        for v in vs
    )
    canon = "\n".join([method, path, "&".join(f"{k}={v}" for k, v in pairs),
                       "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed),
                       ";".join(signed), payload])  # fmt: skip
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", headers["x-amz-date"], scope, hashlib.sha256(canon.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.compare_digest(hmac.new(key, sts.encode(), hashlib.sha256).hexdigest(), fields["Signature"])


_OK = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAFAKE{n}</AccessKeyId>
      <SecretAccessKey>fake-minted-secret-{n}</SecretAccessKey>
      <SessionToken>fake-session-token-{n}</SessionToken>
      <Expiration>{exp}</Expiration>
    </Credentials>
    <AssumedRoleUser><Arn>{role}/s</Arn><AssumedRoleId>AROAFAKE:s</AssumedRoleId></AssumedRoleUser>
  </AssumeRoleResult>
</AssumeRoleResponse>"""


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on a free 127.0.0.1 port, serving from a daemon thread until ``close`` (the fakes'
    shared plumbing; fake_s3.py imports it from here)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, as the gateway's upstream connections expect; no per-request log on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass


class FakeSts(LoopbackServer):
    def __init__(self, source_secret: str, role_arn: str, lifetime: int = 3600) -> None:
        super().__init__(_Handler)
        self.secret, self.role, self.lifetime, self.mode, self.issued = source_secret, role_arn, lifetime, "ok", 0
        self.seen: list[tuple[dict[str, str], dict[str, str]]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(QuietHandler):
    server: FakeSts

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        srv = self.server
        srv.seen.append((form, headers))
        if srv.mode == "garbage":
            return self._send(200, "<Nothing/>")
        if srv.mode == "entity":
            return self._send(200, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
        path, _, query = self.path.partition("?")
        if not verify_sigv4("POST", path, query, headers, body, srv.secret):
            return self._send(403, "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>")
        if form.get("Action") != "AssumeRole" or form.get("RoleArn") != srv.role:
            return self._send(403, "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>")
        srv.issued += 1
        exp = (datetime.now(timezone.utc) + timedelta(seconds=srv.lifetime)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._send(200, _OK.format(n=srv.issued, exp=exp, role=srv.role))
