"""Test helpers: a test CA, HTTPS/HTTP origin servers on loopback that echo what they received."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import http.server
import importlib.util
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FAKES = Path(__file__).resolve().parents[1] / "fakes"
ORIGIN_NAME = "origin.test"
SECRET_VALUE = "ghp_REALsecretVALUE_1234567890"


def unit_policy(origins, extra: str = "") -> str:
    hp, pp = origins["https"].port, origins["http"].port
    return (
        textwrap.dedent(
            f"""\
        version: 1
        network_policies:
          origin:
            name: origin
            endpoints:
              - host: origin.test
                port: {hp}
                allowed_ips: [127.0.0.1/32]
                protocol: rest
                rules:
                  - allow: {{method: GET, path: "/ok/**"}}
                  - allow: {{method: POST, path: "/api/*"}}
              - host: plain.test
                port: {pp}
                allowed_ips: [127.0.0.1/32]
                protocol: rest
                access: read-only
              - host: pass.test
                port: {hp}
                allowed_ips: [127.0.0.1/32]
            binaries:
              - path: /usr/bin/curl
        """
        )
        + extra
    )


# -- client helpers (through a gateway listening on gw.port) ---------------------------------------------


def _response(sock) -> tuple[int, dict, bytes]:
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def connect(gw, authority: str) -> tuple[socket.socket, int, bytes]:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    resp = http.client.HTTPResponse(sock, method="CONNECT")
    resp.begin()
    body = b"" if resp.status == 200 else resp.read()
    return sock, resp.status, body


def tls_over(gw, sock, server_hostname: str, ca=None, check_hostname=True) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca or gw.ca_file))
    ctx.check_hostname = check_hostname
    return ctx.wrap_socket(sock, server_hostname=server_hostname)


def request(sock, method: str, path: str, host: str, headers: dict | None = None, body: bytes = b"") -> tuple:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return _response(sock)


def https(gw, origins, method, path, host="origin.test", headers=None, body=b""):
    port = origins["https"].port
    sock, status, refusal = connect(gw, f"{host}:{port}")
    if status != 200:
        return status, {}, refusal
    with tls_over(gw, sock, host) as tls:
        return request(tls, method, path, f"{host}:{port}", headers, body)


def make_ca_and_leaf(directory: Path, names=(ORIGIN_NAME,)) -> tuple[Path, Path, Path]:
    """(ca.pem, leaf cert.pem, leaf key.pem) for ``names`` (plus 127.0.0.1)."""
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clawfleet test origin CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_path, cert_path, key_path = directory / "origin-ca.pem", directory / "origin.pem", directory / "origin.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                  "body": body.decode("latin-1")}  # fmt: skip
        self.server.seen.append(record)  # type: ignore[attr-defined]
        out = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = _answer

    def log_message(self, *args) -> None:
        pass


class Origin:
    """A threaded HTTP(S) echo server on 127.0.0.1 (random port)."""

    def __init__(self, cert: Path | None = None, key: Path | None = None, handler=None) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler or EchoHandler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []  # type: ignore[attr-defined]
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self) -> list:
        return self.httpd.seen  # type: ignore[attr-defined]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StaticHandler(EchoHandler):
    """Serves ``server.files`` ({path: (content_type, bytes)}); everything else 404."""

    def _answer(self) -> None:
        files = self.server.files  # type: ignore[attr-defined]
        self.server.seen.append({"method": self.command, "path": self.path})  # type: ignore[attr-defined]
        item = files.get(self.path.partition("?")[0])
        if item is None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        ctype, body = item
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = _answer


class GitHandler(EchoHandler):
    """Smart HTTP through git-http-backend (CGI) for repositories under ``server.git_root``."""

    def _answer(self) -> None:
        import os
        import subprocess

        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        self.server.seen.append({"method": self.command, "path": self.path})  # type: ignore[attr-defined]
        env = {"GIT_PROJECT_ROOT": str(self.server.git_root), "GIT_HTTP_EXPORT_ALL": "1",  # type: ignore[attr-defined]
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("content-type", ""), "CONTENT_LENGTH": str(len(body)),
               "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REMOTE_ADDR": "127.0.0.1"}  # fmt: skip
        if self.headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = self.headers["git-protocol"]
        out = subprocess.run(["/usr/lib/git-core/git-http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


def make_wheel(name: str = "demo_pkg", version: str = "1.0") -> tuple[str, bytes]:
    import base64
    import hashlib
    import io
    import zipfile

    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


class SwitchingOrigin:
    """A TLS origin on 127.0.0.1 that answers ``101`` to every request carrying ``Upgrade`` (echoing its value,
    or ``switch_to``), ``200`` with the request head otherwise, and records every byte it receives after a switch:
    the origin a raw-relay bypass would reach. One connection at a time is enough for the tests."""

    def __init__(self, cert: Path, key: Path, switch_to: str | None = None, extra_101: bytes = b"") -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.switch_to = switch_to
        self.extra_101 = extra_101  # header lines added to the 101 (an extension nobody offered)
        self.heads: list[bytes] = []
        self.raw = bytearray()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen()
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as s:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = s.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    self.heads.append(head)
                    upgrade = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")[1:]
                               if ln.lower().startswith(b"upgrade:")]  # fmt: skip
                    if upgrade:
                        proto = (self.switch_to or upgrade[0].decode()).encode()
                        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + proto
                                  + b"\r\nConnection: Upgrade\r\n" + self.extra_101 + b"\r\n")  # fmt: skip
                        self.raw += buf
                        while data := s.recv(65536):
                            self.raw += data
                            s.sendall(data.upper())
                        return
                    body = json.dumps({"head": head.decode("latin-1")}).encode()
                    s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                              % (len(body), body))  # fmt: skip
        except (OSError, ssl.SSLError):
            return

    def close(self) -> None:
        self.srv.close()


# -- WebSocket frames (RFC 6455) ----------------------------------------------------------------------------
def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = b"\x11\x22\x33\x44"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_frames(raw: bytes) -> list[tuple[int, int, bytes]]:
    """(fin, opcode, unmasked payload) of each client frame the origin received."""
    out, i = [], 0
    while i + 2 <= len(raw):
        fin, opcode, n = raw[i] >> 7, raw[i] & 0x0F, raw[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(raw[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(raw[i : i + 8], "big"), i + 8
        key, i = raw[i : i + 4], i + 4
        out.append((fin, opcode, bytes(b ^ key[j % 4] for j, b in enumerate(raw[i : i + n]))))
        i += n
    return out


# -- Providers v2: the profile and policy pieces several provider tests share ---------------------------------

# upstream's endpointless custom-api profile: one credential, injected as the X-Api-Key header
CUSTOM_API_PROFILE = """\
id: custom-api
credentials:
  - name: api_token
    env_vars: [API_TOKEN]
    auth_style: header
    header_name: X-Api-Key
"""


def profile_endpoint(host: str, port: int, binaries: str) -> str:
    """The tail of a profile that brings its own endpoint (read-only REST on loopback) for ``binaries``."""
    return f"""\
endpoints:
  - host: {host}
    port: {port}
    allowed_ips: [127.0.0.1/32]
    protocol: rest
    access: read-only
binaries: {binaries}
"""


def bind_provider(policy: Path, port: int, provider: str) -> None:
    """Adds to a Fleetlet's policy file a rule for origin.test's ``/ok/**`` bound to ``provider``'s credentials
    (the same host on other paths stays unbound: the placeholder goes there)."""
    bound = f"""\
      - host: origin.test
        port: {port}
        path: /ok/**
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: read-only
        credential_binding: {{provider: {provider}}}
"""
    policy.write_text(policy.read_text().replace("    binaries:", bound + "    binaries:"))


def placeholder_loop(var: str, header: str, port: int) -> list[str]:
    """A Fleetlet sandbox command: saves the placeholder in ``$var`` to /sandbox/placeholder.txt, then sends it in
    ``header`` (``$var`` expanded by the sandbox's shell) to origin.test's bound ``/ok/p`` and unbound ``/other/p``,
    again and again."""
    curl = f'curl -s -o /dev/null --max-time 2 -H "{header}" https://origin.test:{port}'
    script = f"""echo "${var}" > /sandbox/placeholder.txt
while true; do
  {curl}/ok/p
  {curl}/other/p
  sleep 0.2
done"""
    return ["/bin/sh", "-c", script]


def seen_header(origin: Origin, path: str, name: str) -> list[str]:
    """Every value of header ``name`` (either spelling) the origin received on ``path``."""
    return [r["headers"].get(name.lower(), r["headers"].get(name, "")) for r in origin.seen if r["path"] == path]


# -- a helper server script on the host, for tests that drive a real client inside a sandbox ----------------


@contextlib.contextmanager
def script_server(script: Path, log_path: Path, *args: str, env: dict | None = None):
    """Runs ``python script PORT *args`` on a free loopback port, waits until it accepts, yields the port and
    kills it after (its output in ``log_path``, shown when it dies before accepting)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, str(script), str(port), *args], stdout=log, stderr=log, env=env)
    try:
        for _ in range(600):
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


def load_fake(name: str) -> ModuleType:
    """Loads tests/fakes/<name>.py (not a package: the fakes also run as scripts) and registers it under its name."""
    spec = importlib.util.spec_from_file_location(name, FAKES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_head(tls) -> bytes:
    """Reads up to the end of a response's head (or until the peer closes)."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = tls.recv(4096)
        if not data:
            break
        head += data
    return head


def use_providers(tmp_path: Path, config: Path, credentials: list[str], providers: dict, gateway_user: str) -> None:
    """Gives a Fleetlet's sandbox (looper.yaml) these placeholders and gateway providers, and runs the daemon's
    parser as ``gateway_user``."""
    definition = json.loads((tmp_path / "looper.yaml").read_text())
    definition["credentials"] = credentials
    definition["gateway"]["providers"] = providers
    (tmp_path / "looper.yaml").write_text(json.dumps(definition))
    config.write_text(json.dumps({**json.loads(config.read_text()), "gateway_user": gateway_user}))


def origin_policy(port: int, protocol: str, path: str = "/public/**") -> str:
    """A policy with one endpoint, ``origin.test`` on loopback ``port``: GET under ``path`` allowed, and text
    messages too where ``protocol`` is ``websocket``."""
    messages = f', {{allow: {{method: WEBSOCKET_TEXT, path: "{path}"}}}}' if protocol == "websocket" else ""
    return f"""\
version: 1
network_policies:
  api:
    name: api
    endpoints:
      - host: origin.test
        port: {port}
        allowed_ips: [127.0.0.1/32]
        protocol: {protocol}
        rules: [{{allow: {{method: GET, path: "{path}"}}}}{messages}]
    binaries: [{{path: /usr/bin/curl}}]
"""
