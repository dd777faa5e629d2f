"""Request targets and destination addresses: strict parsing, normalisation, guards.

Everything a client says about *where* it wants to go passes through here before the policy engine sees
it. Parsing is strict on purpose: an ambiguous spelling is refused, never guessed at.

* ``parse_authority("host:port")`` for CONNECT targets and Host headers;
* ``parse_absolute("http://host[:port]/path?q")`` for absolute-form plain HTTP;
* ``normalize_host`` lower-cases, IDNA-encodes, canonicalises IP literals and refuses the numeric IPv4
  spellings that ``inet_aton`` (and so glibc's resolver) would accept (``2130706433``, ``0x7f.1``,
  ``017700000001``, ``127.1``): they are exactly the SSRF-bypass spellings;
* ``guard_ip`` applies the destination guard to every address the gateway is about to connect to.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass

from clawfleet.policy.engine import ssrf_verdict

__all__ = [
    "Target",
    "TargetError",
    "guard_ip",
    "normalize_host",
    "parse_absolute",
    "parse_authority",
]

MAX_TARGET = 8192
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_NUMERICISH = re.compile(r"[0-9a-fx.]+\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


class TargetError(ValueError):
    """The target cannot be used; ``str()`` is the reason (goes into the 400/403 body and the log)."""


@dataclass(frozen=True)
class Target:
    host: str  # normalised: lower-case DNS name, or a canonical IP text (no brackets)
    port: int
    path: str = "/"  # origin-form path + query ("/" for CONNECT)

    @property
    def is_ip(self) -> bool:
        return is_ip_literal(self.host)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@functools.lru_cache(maxsize=1024)  # pure; a name costs two refused parses (v4, v6), once per plain request
def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def normalize_host(raw: str) -> str:
    """Canonical host text or :class:`TargetError`."""
    if not raw or len(raw) > 255:
        raise TargetError("empty or overlong host")
    h = raw.lower()
    if h.startswith("["):
        if not h.endswith("]"):
            raise TargetError(f"malformed IPv6 literal {raw!r}")
        inner = h[1:-1]
        if "%" in inner:
            raise TargetError("IPv6 zone identifiers are not accepted")
        try:
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise TargetError(f"malformed IPv6 literal {raw!r}") from None
        mapped = ip6.ipv4_mapped
        return str(mapped) if mapped is not None else str(ip6)
    if ":" in h:
        raise TargetError(f"IPv6 literal without brackets: {raw!r}")
    if h.endswith("."):
        h = h[:-1]
    try:
        return str(ipaddress.IPv4Address(h))  # strict dotted-quad (no leading zeros)
    except ValueError:
        pass
    if _NUMERICISH.match(h) and _inet_aton_accepts(h):
        raise TargetError(f"non-canonical numeric IPv4 spelling {raw!r} refused")
    if not h.isascii():
        try:
            h = h.encode("idna").decode("ascii")
        except UnicodeError:
            raise TargetError(f"host {raw!r} is not a valid IDNA name") from None
    labels = h.split(".")
    if len(h) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TargetError(f"invalid host name {raw!r}")
    if labels[-1].isdigit():
        raise TargetError(f"host name {raw!r} ends in a numeric label")
    return h


def _inet_aton_accepts(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return True


def _port(text: str, default: int | None) -> int:
    if text == "":
        if default is None:
            raise TargetError("port missing")
        return default
    if not _PORT.match(text):
        raise TargetError(f"invalid port {text!r}")
    port = int(text)
    if not 0 < port < 65536:
        raise TargetError(f"port {port} out of range")
    return port


# A pure function of its text: every request parses its Host header (and a plain one its target's authority),
# mostly the same few names. Only successful parses are kept (a refusal raises, which lru_cache never stores),
# so an entry is at most a valid host (253) plus a port; 1,024 entries bound the memory; the Target is frozen.
@functools.lru_cache(maxsize=1024)
def parse_authority(text: str, default_port: int | None = None) -> Target:
    """``host:port`` / ``[v6]:port`` (CONNECT target, Host header). No userinfo, path or whitespace."""
    if not text or len(text) > MAX_TARGET:
        raise TargetError("empty or overlong authority")
    if any(c in text for c in "@/?#\\ \t\r\n%"):
        raise TargetError(f"invalid authority {text!r}")
    if not text.isascii() or not text.isprintable():
        raise TargetError(f"invalid authority {text!r}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise TargetError(f"malformed IPv6 literal in {text!r}")
        host_raw, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise TargetError(f"invalid authority {text!r}")
        port_raw = rest[1:] if rest else ""
        if rest == ":":
            raise TargetError("port missing")
    else:
        host_raw, sep, port_raw = text.partition(":")
        if sep and port_raw == "":
            raise TargetError("port missing")
    return Target(normalize_host(host_raw), _port(port_raw, default_port))


def parse_absolute(target: str) -> Target:
    """Absolute-form ``http://authority/path?query`` (plain HTTP through the proxy)."""
    if len(target) > MAX_TARGET or not target.isascii() or not target.isprintable() or " " in target:
        raise TargetError("invalid request target")
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise TargetError("expected an absolute-form target (http://host/path) or CONNECT")
    if scheme.lower() != "http":
        raise TargetError(f"scheme {scheme!r} is not supported in absolute form (use CONNECT for https)")
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        raise TargetError("userinfo in the request target is refused")
    tail = tail.partition("#")[0]
    if not tail:
        tail = "/"
    elif tail.startswith("?"):
        tail = "/" + tail
    where = parse_authority(authority, 80)
    return Target(where.host, where.port, tail)


# The destination guard is the policy engine's, so a policy check and the gateway's connect never disagree.
guard_ip = ssrf_verdict
