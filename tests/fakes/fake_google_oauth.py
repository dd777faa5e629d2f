"""FAKE Google OAuth 2.0 token endpoint, for tests only (the tests never reach oauth2.googleapis.com).

``POST /token`` answers like Google's: a JWT-bearer grant (RFC 7523) whose RS256 signature verifies with the test
service account's PUBLIC key, whose ``iss``/``aud``/``scope`` are the expected ones and which lives at most an
hour gets ``{"access_token": "ya29.fake-<n>", "expires_in": ..., "token_type": "Bearer"}``; a refresh-token
grant with the expected client id, secret and refresh token gets the same; anything else gets 400
``{"error": "invalid_grant"}``. ``server.mode`` switches to misbehaving: ``garbage`` (200, not JSON), ``huge``
(200, a megabyte), ``redirect`` (302 to another endpoint, which must not be followed). Each request's form is
recorded in ``server.seen`` (so a test can show which material reached the endpoint, and that nothing else did).
Standard library and ``cryptography`` (a clawfleet dependency) only.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGoogleOAuth(ThreadingHTTPServer):
    def __init__(self, public_key: rsa.RSAPublicKey, email: str, scope: str, client: tuple[str, str, str],
                 expires_in: int = 3600) -> None:  # fmt: skip
        super().__init__(("127.0.0.1", 0), _Handler)
        self.public_key, self.email, self.scope, self.client = public_key, email, scope, client
        self.expires_in, self.mode, self.issued = expires_in, "ok", 0
        self.seen: list[dict[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/token"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def verify_jwt(self, assertion: str) -> bool:
        try:
            head, body, sig = assertion.split(".")
            if json.loads(_unb64(head)) != {"alg": "RS256", "typ": "JWT"}:
                return False
            self.public_key.verify(_unb64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(_unb64(body))
        except (ValueError, InvalidSignature):
            return False
        return (claims.get("iss") == self.email and claims.get("aud") == self.url
                and claims.get("scope") == self.scope and 0 < claims["exp"] - claims["iat"] <= 3600)  # fmt: skip

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeGoogleOAuth

    def log_message(self, fmt, *a):
        pass

    def _send(self, status: int, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        form = {
            k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()).items()
        }
        srv = self.server
        srv.seen.append(form)
        if srv.mode == "garbage":
            return self._send(200, b"<html>not a token</html>")
        if srv.mode == "huge":
            return self._send(200, b"{" + b" " * (1 << 20) + b"}")
        if srv.mode == "redirect":
            return self._send(302, b"", (("Location", "http://127.0.0.1:9/steal"),))
        grant = form.get("grant_type")
        given = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        ok = (grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" and srv.verify_jwt(form.get("assertion", ""))) or (
            grant == "refresh_token" and given == srv.client
        )
        if not ok:
            return self._send(400, json.dumps({"error": "invalid_grant", "error_description": str(form)}).encode())
        srv.issued += 1
        body = {"access_token": f"ya29.fake-{srv.issued}", "expires_in": srv.expires_in, "token_type": "Bearer"}
        return self._send(200, json.dumps(body).encode())
