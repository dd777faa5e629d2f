"""Gateway-minted provider credentials (upstream Providers v2 ``refresh``): the gateway, never the sandbox, turns a
provider's refresh material (a service account key, an OAuth refresh token, long-lived IAM keys and a role) into
a short-lived credential, caches it, and mints again ``refresh_before_seconds`` before it expires.

Strategies (upstream's ``provider_refresh.rs``):

* ``google_service_account_jwt``: an RS256 JWT (RFC 7523) signed with the service account's private key
  (``cryptography``), exchanged at ``token_url`` for an access token;
* ``oauth2_refresh_token``: an RFC 6749 refresh-token grant at ``token_url`` (gcloud ADC's client id, secret and
  refresh token);
* ``aws_sts_assume_role``: an STS ``AssumeRole`` call signed with SigV4 (:mod:`.sigv4`) with the long-lived keys,
  minting the access key id, secret access key and session token together.

The token endpoint is the gateway's own egress, not a policy hole: it is called from the gateway process with
redirects off and no proxy from the environment, so the material goes to ``token_url`` and nowhere else, and no
sandbox can reach it through this path. Material is read from its files on each mint (rotation by file, as
other provider credentials) and never appears in an error: a :class:`MintError` names the provider, the
credential and what went wrong, with the HTTP status the gateway answers the sandbox (503: the token endpoint
cannot be reached; 502: it answered something that is not a token). A token minted earlier that has not expired
yet is kept while refreshing fails, so a token endpoint's hiccup does not cut a sandbox off early.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from clawfleet.policy.profiles import REFRESH_OUTPUT_ENV, ProfileCredential, ProviderProfile

from .sigv4 import sign_headers

# asyncio, httpx, cryptography and ElementTree are imported where they are used, and by a MintDriver with minters
# (the gateway that mints): the gateway config imports this module (minters_for checks a provider's refresh names
# at parse time), and `clawfleet sandbox run` parses it before its sandbox forks, where httpx alone (it pulls in
# click and rich) cost more than the sandbox.
if TYPE_CHECKING:
    import asyncio

    import httpx

__all__ = ["MintDriver", "MintError", "Minted", "Minter", "minters_for"]

_MAX_RESPONSE = 64 * 1024  # a token answer is a few KiB; more is not a token endpoint
_TIMEOUT = 10.0
_RETRY_AFTER = 5.0  # seconds between attempts after a failed mint
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_GOOGLE_MAX = 3600  # Google refuses assertions that live longer than an hour
_STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
# The minted values of an STS AssumeRole, by the output ids upstream's profiles map to sibling credentials.
_STS_OUTPUTS = {"secret_access_key": "SecretAccessKey", "session_token": "SessionToken"}


class MintError(Exception):
    """Minting failed; ``status`` is what the gateway answers the sandbox (502 or 503). The message names the
    provider and the credential, never material or a token."""

    def __init__(self, provider: str, credential: str, why: str, status: int = 502) -> None:
        super().__init__(f"provider {provider}: cannot mint {credential!r}: {why}")
        self.provider, self.credential, self.status = provider, credential, status


@dataclass(frozen=True)
class Minted:
    values: dict[str, str]  # environment variable -> minted value (the primary and any additional outputs)
    expires_at: float  # time.time() seconds


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def google_assertion(email: str, key_pem: bytes, token_url: str, scopes: tuple[str, ...], now: float,
                     lifetime: int, subject: str | None = None) -> str:  # fmt: skip
    """The RS256-signed JWT a service account presents (RFC 7523 section 2.1; Google's claim set)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private_key is not an RSA private key")
    claims: dict[str, Any] = {"iss": email, "aud": token_url, "iat": int(now), "exp": int(now) + lifetime}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if subject:
        claims["sub"] = subject
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(f"{header}.{body}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{_b64url(signature)}"


class Minter:
    """One refreshed credential of one provider instance: :meth:`values` answers from the cache or mints."""

    def __init__(
        self,
        provider: str,
        credential: ProfileCredential,
        material: Mapping[str, str],
        outputs: Mapping[str, str] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``material``: material name -> the file holding it. ``outputs``: additional output id -> the sibling
        credential's environment variable (for STS: secret_access_key -> AWS_SECRET_ACCESS_KEY ...)."""
        assert credential.refresh is not None
        self.provider, self.credential, self.refresh = provider, credential, credential.refresh
        self.material, self.outputs = dict(material), dict(outputs or {})
        missing = [m.name for m in self.refresh.material if m.required and m.name not in self.material]
        if missing:
            raise ValueError(f"provider {provider}: credential {credential.name!r} needs refresh material"
                             f" {', '.join(missing)}")  # fmt: skip
        unknown = set(self.material) - {m.name for m in self.refresh.material}
        if unknown:
            raise ValueError(f"provider {provider}: {', '.join(sorted(unknown))} is not refresh material of"
                             f" {credential.name!r}")  # fmt: skip
        self._transport, self._clock = transport, clock
        self._cached: Minted | None = None
        self._lock: asyncio.Lock | None = None  # made at the first mint (asyncio is not imported to parse a config)
        # after a failure, the same error for _RETRY_AFTER seconds: a token endpoint that hangs must not hold every
        # request (and the daemon's loop) for the full timeout, nor be hammered by each one
        self._failed: tuple[float, MintError] | None = None

    def names(self) -> tuple[str, ...]:
        """The environment variables this minter fills: the credential's own and its additional outputs'."""
        return (*self.credential.env_vars, *self.outputs.values())

    def _error(self, why: str, status: int = 502) -> MintError:
        return MintError(self.provider, self.credential.name, why, status)

    def _read(self, name: str) -> str | None:
        file = self.material.get(name)
        if file is None:
            return None
        try:
            with open(file, "rb") as f:
                return f.read().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise self._error(f"refresh material {name!r} cannot be read ({type(exc).__name__})", 503) from None

    def _fresh(self, now: float) -> bool:
        c = self._cached
        return c is not None and now < c.expires_at - self.refresh.refresh_before_seconds

    async def values(self) -> dict[str, str]:
        """The current minted values (environment variable -> value), minting when the cache is due."""
        if self._fresh(self._clock()):
            assert self._cached is not None
            return self._cached.values
        if self._lock is None:  # no await since the check: one lock, whichever request comes first
            import asyncio

            self._lock = asyncio.Lock()
        async with self._lock:  # one mint at a time; the rest wait for its result
            now = self._clock()
            if self._fresh(now):
                assert self._cached is not None
                return self._cached.values
            if self._failed is not None and now < self._failed[0]:
                if self._cached is not None and now < self._cached.expires_at:
                    return self._cached.values
                raise self._failed[1]
            try:
                self._cached = await self._mint(now)
            except MintError as exc:
                self._failed = (now + _RETRY_AFTER, exc)
                if self._cached is not None and now < self._cached.expires_at:
                    return self._cached.values  # refreshing failed, but the last token is still good
                raise
            self._failed = None
            return self._cached.values

    def _lifetime(self, granted: float) -> float:
        cap = self.refresh.max_lifetime_seconds
        return min(granted, cap) if cap else granted

    async def _post(self, url: str, form: dict[str, str], headers: list[tuple[str, str]] | None = None) -> bytes:
        body = urlencode(form).encode("ascii")
        sent = [("content-type", "application/x-www-form-urlencoded"), *(headers or [])]
        import httpx

        try:
            client = httpx.AsyncClient(transport=self._transport, trust_env=False, follow_redirects=False,
                                       timeout=_TIMEOUT)  # fmt: skip
            async with client, client.stream("POST", url, content=body, headers=sent) as resp:
                data = b""
                async for chunk in resp.aiter_raw():
                    data += chunk
                    if len(data) > _MAX_RESPONSE:
                        raise self._error(f"the token endpoint's answer is over {_MAX_RESPONSE} bytes")
        except httpx.HTTPError as exc:
            raise self._error(f"the token endpoint {_origin(url)} cannot be reached ({type(exc).__name__})",
                              503) from None  # fmt: skip
        if resp.status_code != 200:
            raise self._error(f"the token endpoint {_origin(url)} answered HTTP {resp.status_code}{_oauth_error(data)}")
        return data

    async def _mint(self, now: float) -> Minted:
        strategy = self.refresh.strategy
        if strategy == "aws_sts_assume_role":
            return await self._sts(now)
        if strategy == "google_service_account_jwt":
            email, key = self._read("client_email"), self._read("private_key")
            assert email is not None and key is not None  # required material, checked at start
            lifetime = min(self.refresh.max_lifetime_seconds or _GOOGLE_MAX, _GOOGLE_MAX)
            try:
                assertion = google_assertion(email, key.encode(), self.refresh.token_url, self.refresh.scopes, now,
                                             lifetime, self._read("subject"))  # fmt: skip
            except (ValueError, TypeError) as exc:
                raise self._error(f"private_key cannot sign ({type(exc).__name__})", 503) from None
            form = {"grant_type": _JWT_GRANT, "assertion": assertion}
        else:  # oauth2_refresh_token
            form = {"grant_type": "refresh_token"}
            for name in ("client_id", "client_secret", "refresh_token"):
                value = self._read(name)
                assert value is not None
                form[name] = value
        data = await self._post(self.refresh.token_url, form)
        try:
            answer = json.loads(data)
            token, expires_in = answer["access_token"], answer.get("expires_in", 3600)
            if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable():
                raise ValueError
            if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise self._error("the token endpoint answered something that is not an OAuth 2.0 token") from None
        values = {var: token for var in self.credential.env_vars}
        return Minted(values, now + self._lifetime(expires_in))

    async def _sts(self, now: float) -> Minted:
        role = self._read("role_arn")
        key_id, secret = self._read("aws_access_key_id"), self._read("aws_secret_access_key")
        if not key_id or not secret:
            raise self._error("AssumeRole needs aws_access_key_id and aws_secret_access_key material (the gateway"
                              " does not use ambient AWS credentials)", 503)  # fmt: skip
        region = self._read("aws_region") or "us-east-1"
        url = self.refresh.token_url or f"https://sts.{region}.amazonaws.com/"
        duration = self.refresh.max_lifetime_seconds or 3600
        form = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role or "",
                "RoleSessionName": self._read("session_name") or f"clawfleet-{self.provider}",
                "DurationSeconds": str(max(900, duration))}  # fmt: skip
        external = self._read("external_id")
        if external:
            form["ExternalId"] = external
        parts = urlsplit(url)
        body = urlencode(form).encode("ascii")
        headers = sign_headers(
            method="POST", host=parts.netloc, path=parts.path or "/", query=parts.query,
            headers=[("content-type", "application/x-www-form-urlencoded")],
            payload_hash=hashlib.sha256(body).hexdigest(), access_key=key_id, secret_key=secret,
            region=region, service="sts", session_token=self._read("aws_session_token"),
            now=datetime.fromtimestamp(now, timezone.utc),
        )  # fmt: skip
        data = await self._post(url, form, [(n, v) for n, v in headers if n != "content-type"])
        import xml.etree.ElementTree as ET

        try:
            if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
                raise ValueError  # no entity expansion from a token endpoint
            # a DOCTYPE (and so any entity) was refused above and the answer is at most 64 KiB: what defusedxml
            # guards against cannot arrive, without another dependency
            root = ET.fromstring(data)  # noqa: S314
            creds = root.find(f"{_STS_NS}AssumeRoleResult/{_STS_NS}Credentials")
            if creds is None:
                raise ValueError
            got = {tag: (creds.findtext(f"{_STS_NS}{tag}") or "").strip() for tag in
                   ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}  # fmt: skip
            if not all(got.values()) or not all(v.isascii() and v.isprintable() for v in got.values()):
                raise ValueError
            expires = datetime.fromisoformat(got["Expiration"].replace("Z", "+00:00")).timestamp()
        except (ValueError, ET.ParseError):
            raise self._error("STS answered something that is not AssumeRole credentials") from None
        values = {var: got["AccessKeyId"] for var in self.credential.env_vars}
        for output, var in self.outputs.items():
            values[var] = got[_STS_OUTPUTS[output]]
        return Minted(values, now + self._lifetime(expires - now))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _oauth_error(data: bytes) -> str:
    """An RFC 6749 error code from the answer (``invalid_grant``), never its description (it may quote input)."""
    try:
        code = json.loads(data).get("error")
    except (ValueError, AttributeError):
        return ""
    return f" ({code})" if isinstance(code, str) and code.isidentifier() and len(code) <= 64 else ""


def minters_for(provider: str, profile: ProviderProfile, material: Mapping[str, Mapping[str, str]],
                **kwargs: Any) -> dict[str, Minter]:  # fmt: skip
    """One :class:`Minter` per refreshed credential given material (``material``: the credential's primary
    environment variable -> {material name -> file}), keyed by that variable."""
    out = {}
    by_var = {v: c for c in profile.credentials for v in c.env_vars}
    for var, files in material.items():
        c = by_var.get(var)
        if c is None or c.refresh is None:
            raise ValueError(f"provider {provider}: {var} is not a refreshed credential of profile {profile.id!r}")
        # the sibling's pinned key (AWS_SECRET_ACCESS_KEY ...), which the profile check made sure it lists
        outputs = {o: REFRESH_OUTPUT_ENV[c.refresh.strategy][o] for o, _ in c.refresh.additional_outputs}
        out[var] = Minter(provider, c, files, outputs, **kwargs)
    return out


class MintDriver:
    """The privileged gateway's minters (``providers.<name>.refresh``): :meth:`refresh` brings each minted value
    in :class:`.credentials.Secrets` up to date (cached minters answer at once), recording a failure so the
    placeholder is refused with the minter's status rather than sent on. The unprivileged parser has none: it gets
    the values this process minted with the other secrets (.privsep)."""

    def __init__(
        self,
        providers: Mapping[str, ProviderProfile],
        material: Mapping[str, Mapping[str, Mapping[str, str]]],
        **kwargs: Any,
    ) -> None:
        self.minters: list[Minter] = []
        for name, per_var in material.items():
            self.minters.extend(minters_for(name, providers[name], per_var, **kwargs).values())
        # (secrets, values) last handed over per minter: a cached minter returns the same dict until it mints
        # again, so a request pays for the hand-over only when a value is new (or went to another Secrets).
        self._handed: dict[int, tuple[Any, Mapping[str, str]]] = {}
        if self.minters:  # the gateway that mints loads what minting needs now: a broken install fails its start
            import xml.etree.ElementTree  # noqa: F401

            import httpx  # noqa: F401
            from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: F401

    def __bool__(self) -> bool:
        return bool(self.minters)

    async def refresh(self, secrets: Any) -> None:
        for minter in self.minters:
            try:
                values = await minter.values()
            except MintError as exc:
                self._handed.pop(id(minter), None)
                secrets.mint_failed(minter.names(), exc.status, str(exc))
                continue
            last = self._handed.get(id(minter))
            if last is None or last[0] is not secrets or last[1] is not values:
                secrets.set_minted(values)
                self._handed[id(minter)] = (secrets, values)

    async def run(self, secrets: Any, interval: float = 5.0) -> None:
        """Refresh every ``interval`` seconds, so values reach the parser before a request needs them."""
        import asyncio

        while True:
            await self.refresh(secrets)
            await asyncio.sleep(interval)
