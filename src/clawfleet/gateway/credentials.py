"""Credential bindings: where the gateway may put a secret's real value in place of its placeholder.

A bound host that echoes what it received (an error page quoting the URL, a debug endpoint returning the
headers, ``TRACE``) hands the real value back to the sandbox. So the binding names the exact places the value
may go, and the placeholder must fill that place entirely (no text of the sandbox's around it):

* ``headers`` (default ``[authorization]``): header names whose whole value is the placeholder; for
  ``Authorization`` the value is ``<scheme> <placeholder>`` with ``scheme`` in ``schemes`` (default
  ``[bearer, token, basic]``); for ``Basic`` the decoded ``user:password`` may carry the placeholder as the whole
  user or the whole password;
* ``query`` (default none): query parameters whose whole value is the placeholder (raw or percent-encoded);
* ``path`` (default none): literal path prefixes (``/bot`` for the Telegram Bot API's ``/bot<token>/getMe``);
  the placeholder must start right after one of them and run to the end of that path segment (the next ``/``
  or the end of the path). The prefix is anchored at the start of the path, so a placeholder in any later
  segment, after other text, split by a ``/``, or in a second segment is left alone. The path must have been
  sent in the gateway's canonical form (docs/policy.md, request targets): a target that canonicalisation
  changed (percent-escapes, ``//``) gets nothing, so only one spelling of the place exists. The value is
  percent-encoded with ``/``, ``?``, ``#`` and ``%`` escaped: it can never add a segment or a query.

The policy engine judges, and the decision log records, the target as the sandbox sent it (placeholder
included); the real value is put in afterwards, only on the wire to the bound host.

A provider's credential (upstream Providers v2, :mod:`.providers`) is bound to endpoints instead of hosts: host
pattern, port and path, from its profile or from the policy endpoints that name it (``credential_binding``),
re-read on every policy reload (:meth:`Secrets.scope`). Only such a credential may also travel over plain HTTP,
and only to an address the policy or the operator granted on loopback or a private network (the value never
crosses a network the operator does not own in clear text); host-bound ``secrets:`` stay TLS-only.

Anywhere else the placeholder passes unchanged, so it is what an echoing host would return. On the way back,
the response headers of a request that had a value put in get the placeholder again in place of the value
(``scrub``): a redirect quoting the path returns the placeholder. Response bodies are not rewritten.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from clawfleet.policy.globmatch import compile_glob
from clawfleet.policy.middleware import matches_host
from clawfleet.policy.model import Endpoint

__all__ = ["PLACEHOLDER_PREFIXES", "CredentialUnavailable", "Destination", "SecretBinding", "Secrets", "parse_binding"]

PLACEHOLDER_PREFIXES = ("clawfleet:secret:", "openshell:resolve:env:")
_PLACEHOLDER = re.compile(rb"(?:clawfleet:secret:|openshell:resolve:env:)([A-Za-z_][A-Za-z0-9_]{0,127})")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # RFC 9110 token: header names, auth schemes
_PARAM = re.compile(r"[A-Za-z0-9._~-]{1,64}")
# A path prefix: "/" then segments of unreserved characters; the last one may be empty ("/v1/") or the literal
# start of the placeholder's segment ("/bot"). parse_binding refuses "//" and dot segments.
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]*){1,16}")
# What a value placed in a path segment keeps unescaped: pchar minus "%" (so nothing is decoded twice). "/", "?",
# "#" and ";" are always escaped, so the value stays inside its segment.
_SEGMENT_SAFE = "-._~!$&'()*+,=:@"
# Methods that echo the request back to the sender: never sent to a host a credential is bound to.
ECHO_METHODS = frozenset({"TRACE", "TRACK"})


class CredentialUnavailable(FileNotFoundError):
    """A gateway-minted credential has no current value: the request that carries its placeholder is answered
    ``status`` (503: not minted / unreachable token endpoint, 502: a bad answer) with a message naming the
    provider, instead of going on with the placeholder."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SecretBinding:
    name: str
    file: str
    hosts: tuple[str, ...]
    headers: tuple[str, ...] = ("authorization",)
    schemes: tuple[str, ...] = ("bearer", "token", "basic")
    query: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    provider: str | None = None  # a provider's credential: bound to that provider's endpoints, not to ``hosts``
    # a gateway-minted credential (.token_mint): the primary environment variable of the refresh that mints it
    # (its own name for the primary); its value comes from the minter, never from ``file``
    minted_by: str | None = None

    def bound_to(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts)


@dataclass(frozen=True)
class Destination:
    """Where one request goes, as far as a binding cares: ``path`` is the canonical path without the query (as
    upstream matches a binding), ``plain`` whether it leaves without TLS, ``private`` whether every address it
    may go to is loopback or private (:func:`.providers.private_addresses`)."""

    host: str
    port: int | None = None
    path: str = "/"
    plain: bool = False
    private: bool = False


def _endpoint_covers(ep: Endpoint, dest: Destination) -> bool:
    if dest.port not in ep.ports or not matches_host((ep.host,), dest.host):
        return False
    return ep.path is None or ep.path in ("**", "/**") or bool(_path_glob(ep.path).match(dest.path))


@functools.lru_cache(maxsize=256)
def _path_glob(pattern: str) -> Any:
    """An endpoint path glob, compiled once (the same matcher as the policy engine's endpoint ``path``)."""
    return compile_glob(pattern)


def parse_binding(name: Any, spec: Any, path: Callable[[Any], str | None]) -> SecretBinding:
    """One ``secrets:`` entry; a ValueError names the secret and the setting."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid secret name {name!r}")
    if not isinstance(spec, Mapping) or "file" not in spec or not spec.get("hosts"):
        raise ValueError(f"secret {name}: needs 'file' and a non-empty 'hosts' list")
    unknown = set(spec) - {"file", "hosts", "headers", "schemes", "query", "path"}
    if unknown:
        raise ValueError(f"secret {name}: unknown settings {', '.join(sorted(map(str, unknown)))}")

    def names(key: str, pattern: re.Pattern[str], default: tuple[str, ...]) -> tuple[str, ...]:
        value = spec.get(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
            raise ValueError(f"secret {name}: '{key}' must be a list of names, not {value!r}")
        if key == "path" and any("//" in v or seg in (".", "..") for v in value for seg in v.split("/")):
            raise ValueError(f"secret {name}: 'path' prefixes may not contain '//', '.' or '..' segments: {value!r}")
        return tuple(v if key in ("query", "path") else v.lower() for v in value)

    return SecretBinding(
        name,
        path(spec["file"]) or "",
        tuple(str(h).lower() for h in spec["hosts"]),
        headers=names("headers", _TOKEN, SecretBinding.headers),
        schemes=names("schemes", _TOKEN, SecretBinding.schemes),
        query=names("query", _PARAM, SecretBinding.query),
        path=names("path", _PREFIX, SecretBinding.path),
    )


class Secrets:
    """Placeholder -> real value, only for hosts a secret is bound to and only where its binding says. Values are
    read from root-only files (re-read when the file changes) and never logged."""

    def __init__(self, bindings: Iterable[SecretBinding] = (), values: Mapping[str, bytes] | None = None) -> None:
        """``values``: the real values as handed over by the privileged gateway process (:mod:`.privsep`), for a
        parser process that cannot read the root-only files; None: read the files."""
        self.bindings = {b.name: b for b in bindings}
        self._values: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._given: dict[str, bytes] | None = dict(values) if values is not None else None
        self._scopes: dict[str, tuple[Endpoint, ...]] = {}  # provider -> its endpoints (see scope)
        self._minted: dict[str, bytes] = {}  # gateway-minted values (.token_mint), by environment variable
        self._mint_errors: dict[str, tuple[int, str]] = {}  # why a minted value is missing: (status, message)

    def __bool__(self) -> bool:
        return bool(self.bindings)

    def scope(self, scopes: Mapping[str, tuple[Endpoint, ...]]) -> None:
        """Where each provider's credentials may go now (``clawfleet.policy.credential_scopes`` of the live
        policy); a provider left out has no endpoint, so its placeholders pass unchanged everywhere."""
        self._scopes = dict(scopes)

    def _reaches(self, b: SecretBinding, dest: Destination) -> bool:
        if b.provider is None:
            return not dest.plain and b.bound_to(dest.host)
        if dest.plain and not dest.private:
            return False
        return any(_endpoint_covers(ep, dest) for ep in self._scopes.get(b.provider, ()))

    def _host_bound(self, b: SecretBinding, host: str, port: int | None) -> bool:
        if b.provider is None:
            return b.bound_to(host)
        return any(matches_host((ep.host,), host) and (port is None or port in ep.ports)
                   for ep in self._scopes.get(b.provider, ()))  # fmt: skip

    def bound(self, host: str, port: int | None = None) -> bool:
        """A credential may go to ``host`` (on ``port``; None: any port) in some place, on some path."""
        return any(self._host_bound(b, host, port) for b in self.bindings.values())

    def refuses(self, method: str, host: str, port: int | None = None) -> bool:
        """An echoing method to a bound host (it would return the injected values to the sandbox)."""
        return method in ECHO_METHODS and self.bound(host, port)

    def snapshot(self) -> dict[str, bytes]:
        """Every bound secret's current value that can be read now (a missing file is left out: its placeholder
        then fails as it would here)."""
        out = {}
        for name in self.bindings:
            try:
                out[name] = self._value(name)
            except OSError:
                continue
        return out

    def update(self, values: Mapping[str, bytes]) -> None:
        """New values handed over (only for a :class:`Secrets` made with ``values``)."""
        self._given = dict(values)

    def aws_keys(self, dest: Destination) -> tuple[str, str, str, str | None] | None:
        """(provider, access key id, secret access key, session token or None) of the provider whose AWS
        credentials reach ``dest`` (SigV4 re-signing, upstream's ``credential_signing``), None when none does.
        Raises :class:`CredentialUnavailable` for a minted key that has no current value."""
        for b in self.bindings.values():
            if b.provider is None or b.name != "AWS_ACCESS_KEY_ID" or not self._reaches(b, dest):
                continue
            peers = {n: x for n, x in self.bindings.items() if x.provider == b.provider}
            if "AWS_SECRET_ACCESS_KEY" not in peers:
                continue
            token = None
            if "AWS_SESSION_TOKEN" in peers:
                try:
                    token = self._value("AWS_SESSION_TOKEN").decode()
                except CredentialUnavailable:
                    raise
                except OSError:
                    token = None  # a static pair without a session token
            key_id = self._value("AWS_ACCESS_KEY_ID").decode()
            return b.provider, key_id, self._value("AWS_SECRET_ACCESS_KEY").decode(), token
        return None

    def set_minted(self, values: Mapping[str, str]) -> None:
        """Freshly minted values (environment variable -> value) of gateway-minted credentials."""
        for name, value in values.items():
            self._minted[name] = value.encode("utf-8")
            self._mint_errors.pop(name, None)

    def mint_failed(self, names: Iterable[str], status: int, message: str) -> None:
        """Minting these failed and no unexpired value is left: their placeholders are refused with ``status``."""
        for name in names:
            self._minted.pop(name, None)
            self._mint_errors[name] = (status, message)

    def _value(self, name: str) -> bytes:
        b = self.bindings[name]
        if self._given is not None:
            if name not in self._given:
                if b.minted_by is not None:
                    raise CredentialUnavailable(f"provider {b.provider}: no current value for {name} (the gateway"
                                                " could not mint it yet)")  # fmt: skip
                raise FileNotFoundError(f"secret {name}: no value handed over")
            return self._given[name]
        if b.minted_by is not None:
            if name in self._minted:
                return self._minted[name]
            status, message = self._mint_errors.get(name, (503, f"provider {b.provider}: {name} is not minted yet"))
            raise CredentialUnavailable(message, status)
        st = os.stat(b.file)
        key = (st.st_mtime_ns, st.st_size)
        cached = self._values.get(name)
        if cached and cached[0] == key:
            return cached[1]
        with open(b.file, "rb") as f:
            value = f.read().removesuffix(b"\n").removesuffix(b"\r")
        self._values[name] = (key, value)
        return value

    def _whole(
        self, dest: Destination, data: bytes, allowed: Callable[[SecretBinding], bool], used: set[str]
    ) -> bytes | None:
        """The real value when ``data`` is exactly one placeholder of a secret bound to ``dest`` and allowed here."""
        m = _PLACEHOLDER.fullmatch(data)
        if m is None:
            return None
        b = self.bindings.get(m.group(1).decode())
        if b is None or not self._reaches(b, dest) or not allowed(b):
            return None
        used.add(b.name)
        return self._value(b.name)

    def provider_reaches(self, dest: Destination) -> bool:
        """Some provider's credential may go to ``dest`` (a body is buffered for rewriting only then)."""
        return any(b.provider is not None and self._reaches(b, dest) for b in self.bindings.values())

    def fill(self, dest: Destination, data: bytes, used: set[str]) -> bytes | None:
        """The real value for a place in a request body (:mod:`.body_credentials`): ``data`` is exactly one
        placeholder of a provider credential that reaches ``dest``. Host-bound ``secrets:`` name no body place."""
        return self._whole(dest, data, lambda b: b.provider is not None, used)

    def _authorization(self, dest: Destination, value: bytes, used: set[str]) -> bytes:
        scheme, sep, cred = value.partition(b" ")
        lowered = scheme.lower().decode("latin-1")
        if not sep:
            return value
        if lowered == "basic":
            try:
                user, colon, password = base64.b64decode(cred.strip(), validate=True).partition(b":")
            except ValueError:
                return value

            def ok(b: SecretBinding) -> bool:
                return "authorization" in b.headers and "basic" in b.schemes

            new_user = self._whole(dest, user, ok, used)
            new_password = self._whole(dest, password, ok, used) if colon else None
            if new_user is None and new_password is None:
                return value
            raw = (new_user if new_user is not None else user) + colon
            raw += new_password if new_password is not None else password
            return scheme + b" " + base64.b64encode(raw)
        real = self._whole(dest, cred.strip(), lambda b: "authorization" in b.headers and lowered in b.schemes, used)
        return value if real is None else scheme + b" " + real

    def _path(self, dest: Destination, path: bytes, used: set[str]) -> bytes:
        """``path`` with the one placeholder that fills the segment after a bound prefix replaced, if any."""
        for b in self.bindings.values():
            if not b.path or not self._reaches(b, dest):
                continue
            for prefix in b.path:
                raw = prefix.encode()
                if not path.startswith(raw):
                    continue
                segment, slash, rest = path[len(raw) :].partition(b"/")
                real = self._whole(dest, segment, lambda c, p=prefix: p in c.path, used)
                if real is not None:
                    return raw + quote(real, safe=_SEGMENT_SAFE).encode() + slash + rest
        return path

    def _target(self, dest: Destination, target: bytes, used: set[str], sent: bytes | None) -> bytes:
        path, sep, query = target.partition(b"?")
        # Only a path the sandbox sent as it is forwarded: one spelling, which the policy judged.
        if sent is not None and sent.partition(b"?")[0] == path:
            path = self._path(dest, path, used)
        if not sep or not any(b.query for b in self.bindings.values()):
            return path + sep + query
        parts = []
        for part in query.split(b"&"):
            key, eq, val = part.partition(b"=")
            if eq:
                param = key.decode("latin-1")
                real = self._whole(dest, unquote_to_bytes(val), lambda b, p=param: p in b.query, used)
                if real is not None:
                    part = key + b"=" + quote(real, safe="").encode()
            parts.append(part)
        return path + b"?" + b"&".join(parts)

    def scrub(self, used: set[str], headers: list[tuple[bytes, bytes]], sent: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Response headers with the real values of ``used`` (raw or percent-encoded, as a path carries them) put
        back to their placeholders: a redirect or a header quoting the request (``Location: /bot<token>/``) gives
        the sandbox its placeholder back, never the value. ``sent`` (the request as the sandbox sent it) picks
        the placeholder's form (``openshell:resolve:env:`` when the sandbox used that one). Bodies are not
        scrubbed (docs/gateway.md, Known gaps)."""
        if not used:
            return headers
        forms = []
        for name in sorted(used):
            value = self._value(name)
            if not value:
                continue
            placeholder = b"openshell:resolve:env:" + name.encode()
            if placeholder not in sent:
                placeholder = b"clawfleet:secret:" + name.encode()
            for real in {value, quote(value, safe=_SEGMENT_SAFE).encode(), quote(value, safe="").encode()}:
                forms.append((real, placeholder))
        forms.sort(key=lambda f: -len(f[0]))  # the longest spelling first: one may contain another
        out = []
        for key, val in headers:
            if key not in (b"content-length", b"transfer-encoding"):  # framing: no token fits, a short value could
                for real, placeholder in forms:  # still match its digits and break the response
                    val = val.replace(real, placeholder)
            out.append((key, val))
        return out

    def inject(
        self, host: str | Destination, target: bytes, headers: list[tuple[bytes, bytes]], sent: bytes | None = None
    ) -> tuple[bytes, list, set[str]]:
        """(target, headers, names of the secrets used). ``host``: the destination (a bare host name: over TLS, a
        port no provider binding names); ``target`` is the canonical origin-form target that is forwarded,
        ``sent`` the target as the sandbox sent it (``None``: no ``path`` binding applies). h11 gives lower-case
        header names."""
        used: set[str] = set()
        if isinstance(host, Destination):
            dest = host
        else:
            dest = Destination(host, path=target.partition(b"?")[0].decode("latin-1"))
        if not self.bindings or not any(self._reaches(b, dest) for b in self.bindings.values()):
            return target, headers, used
        out = []
        for key, value in headers:
            if key == b"authorization":  # Basic carries the placeholder base64-encoded
                value = self._authorization(dest, value, used)
            elif b"clawfleet:secret:" in value or b"openshell:resolve:env:" in value:
                name = key.decode("latin-1")
                real = self._whole(dest, value.strip(), lambda b, n=name: n in b.headers, used)
                value = value if real is None else real
            out.append((key, value))
        return self._target(dest, target, used, sent), out, used
