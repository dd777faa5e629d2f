"""Per-sandbox certificate authority for TLS interception (``cryptography``).

The CA key is generated in the gateway's memory and never written anywhere the sandbox can see: leaf
certificates are signed in memory; ``ssl`` needs a file for ``load_cert_chain``, so each leaf's PEM is
written to a root-only (0700) directory outside the sandbox, loaded, and unlinked at once. Leaf contexts
are cached per host name. The sandbox only ever receives the CA *certificate* (``bundle_text``).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
import tempfile
import threading
from collections import OrderedDict

# Encoding, PrivateFormat and NoEncryption from where the public `serialization` package takes them: that package
# also imports its SSH key support (ciphers and all), a sixth of the cryptography imports on the start path of
# `clawfleet sandbox run`, for nothing the CA does. cryptography is pinned, and
# tests/gateway/test_sandbox_start_path.py checks these are the public classes; persistent() imports the public
# package, for load_pem_private_key.
from cryptography import x509
from cryptography.hazmat.primitives import _serialization as serialization
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clawfleet.atomicfile import write_atomic

__all__ = ["SYSTEM_BUNDLES", "SandboxCA", "system_bundle_path", "upstream_context"]

SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian/Ubuntu
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL/Fedora
    "/etc/ssl/cert.pem",  # Alpine/BSD
)


def system_bundle_path() -> str | None:
    for path in SYSTEM_BUNDLES:
        if os.path.exists(path):
            return path
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_ca(name: str, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"[:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "clawfleet egress gateway")])  # fmt: skip
    start = _now() - datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


class SandboxCA:
    def __init__(
        self,
        name: str = "clawfleet sandbox",
        *,
        days: int = 30,
        cache_size: int = 512,
        key: ec.EllipticCurvePrivateKey | None = None,
        cert: x509.Certificate | None = None,
    ) -> None:
        self._days = days
        if key is not None and cert is not None:
            self.key, self.cert = key, cert
        else:
            self.key, self.cert = _new_ca(name, days)
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        # The one key of every leaf, made with the first leaf (_leaf_key_and_pem): a sandbox that never opens an
        # intercepted connection does not pay for it, nor for the PEM encoding (cryptography then imports its public
        # serialization package, SSH key support and all).
        self._leaf: tuple[ec.EllipticCurvePrivateKey, bytes] | None = None
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._dir = tempfile.mkdtemp(prefix="clawfleet-gw-")  # 0700, root-owned

    @classmethod
    def persistent(cls, path: str, name: str, *, days: int = 30, renew_before_days: int = 7) -> SandboxCA:
        """The CA kept in ``path`` (key + certificate, root-only 0600 in a 0700 directory the sandbox never
        sees), created or renewed when missing or close to expiry. The gateway daemon uses it so that a
        restarted gateway presents the same CA the running sandbox already trusts."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            with open(path, "rb") as f:
                pem = f.read()
            key = load_pem_private_key(pem, password=None)
            cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])
            if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc - _now() > datetime.timedelta(
                days=renew_before_days
            ):
                return cls(name, days=days, key=key, cert=cert)
        except (OSError, ValueError):
            pass
        ca = cls(name, days=days)
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        write_atomic(path, ca.pem(), 0o600)
        return ca

    def pem(self) -> bytes:
        """Key and certificate, as kept by :meth:`persistent` (and handed to a parser process, see privsep)."""
        key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())  # fmt: skip
        return key_pem + self.cert_pem

    def bundle_text(self, system_bundle: str | None = None, extra_ca_file: str | None = None) -> bytes:
        """What the sandbox trusts: the system bundle, the operator's extra CA (internal services reached
        through L4 passthrough endpoints present its certificates directly) and this CA."""
        parts = []
        for path in (system_bundle or system_bundle_path(), extra_ca_file):
            if path:
                with open(path, "rb") as f:
                    data = f.read()
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                parts.append(data)
        return b"".join(parts) + self.cert_pem

    def _leaf_key_and_pem(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        with self._lock:
            if self._leaf is None:
                key = ec.generate_private_key(ec.SECP256R1())
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())  # fmt: skip
                self._leaf = (key, pem)
            return self._leaf

    def leaf_pem(self, host: str) -> bytes:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        start = _now() - datetime.timedelta(hours=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.cert.subject)
            .public_key(self._leaf_key_and_pem()[0].public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=self._days))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server-side context presenting a leaf for ``host`` (cached)."""
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is not None:
                self._contexts.move_to_end(host)
                return ctx
        pem = self.leaf_pem(host) + self.cert_pem
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = _record_sni
        fd, path = tempfile.mkstemp(dir=self._dir, suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem + self._leaf_key_and_pem()[1])
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        with self._lock:
            self._contexts[host] = ctx
            while len(self._contexts) > self._cache_size:
                self._contexts.popitem(last=False)
        return ctx

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def _record_sni(obj, server_name, _ctx) -> None:
    """Remember the SNI the client sent (the proxy compares it with the CONNECT target and Host)."""
    with contextlib.suppress(AttributeError):
        obj.clawfleet_sni = server_name
    return None


def upstream_context(extra_ca_file: str | None = None) -> ssl.SSLContext:
    """Client context for the gateway -> origin leg: system store + optional extra CA, full verification."""
    ctx = ssl.create_default_context()
    path = system_bundle_path()
    if path:
        ctx.load_verify_locations(path)
    if extra_ca_file:
        ctx.load_verify_locations(extra_ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
