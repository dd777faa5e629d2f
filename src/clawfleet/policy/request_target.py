"""Canonical request targets: the one form of a path that is judged and, by the gateway, forwarded.

Origins disagree on how to read a path: Tomcat, Jetty and Spring drop ``;`` parameters (``/admin;x/y`` is
``/admin/y``, ``/..;/`` climbs), servers decode percent-escapes once or twice, trim whitespace, map fullwidth
``．`` to ``.`` or ``\\`` to ``/``. A policy judged on one reading and an origin acting on another is a bypass.
So a path is either turned into one canonical form, which the engine judges and the gateway sends, or refused:

* percent-escapes are decoded (strict UTF-8); the canonical form re-encodes with upper-case escapes everything
  but unreserved characters, sub-delimiters other than ``;``, ``:``, ``@`` and ``/``; runs of ``/`` become one;
* refused, because no single reading exists: ``;`` (raw or encoded), encoded ``/`` or ``\\``, ``\\``, ``.`` and
  ``..`` segments, a ``#`` fragment (clients never send one), an encoded ``%`` (double encoding), an encoded
  ``?`` or ``#``, control characters and whitespace (``%00``, ``%09``, ``%20``, ...), Unicode format, private
  and unassigned characters, characters that compatibility-normalise to ASCII (fullwidth ``．`` ``／``),
  malformed escapes, anything but visible ASCII on the wire, and targets longer than :data:`MAX_TARGET_LEN`.

The query string is checked (visible ASCII, well-formed escapes, no ``#``) and kept as sent: query selectors
judge its form-decoded values, which is how origins read it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["MAX_TARGET_LEN", "CanonicalTarget", "TargetRefused", "canonical_request_path", "canonicalize_target"]

MAX_TARGET_LEN = 8192
# RFC 3986 pchar minus ";" (refused) and "%" (always an escape): what the canonical form leaves unescaped.
_SAFE = "-._~!$&'()*+,=:@/"
_WIRE = re.compile(r"[!-~]*\Z")  # visible ASCII
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_REFUSED = {
    "%2f": "an encoded '/'",
    "%5c": "an encoded '\\'",
    "%3b": "an encoded ';'",
    "%25": "an encoded '%' (double encoding)",
    "%3f": "an encoded '?'",
    "%23": "an encoded '#'",
}
_MULTI_SLASH = re.compile(r"/{2,}")
_SAFE_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/]+")
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,=:@/]*\Z")  # already canonical unless "//" or dot segments
_PLAIN_QUERY = re.compile(r'(?:[!"$&-~]|%[0-9A-Fa-f]{2})*\Z')  # visible ASCII, no "#", escapes well-formed


class TargetRefused(ValueError):
    """A request target with no single reading. ``str()`` says why; ``status`` is 400, or 414 when too long."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class CanonicalTarget:
    path: str  # decoded canonical path: what the policy judges
    query: str | None  # the query string as sent (None: no "?")

    @property
    def wire_path(self) -> str:
        return quote(self.path, safe=_SAFE)

    @property
    def wire(self) -> str:
        """The origin-form target that is forwarded; canonicalising it gives this same target back."""
        return self.wire_path + ("" if self.query is None else "?" + self.query)


def _refuse_char(ch: str) -> str | None:
    if ch in "\\;":
        return f"{ch!r}"
    if ch.isspace():
        return f"whitespace {ch!r}"
    cat = unicodedata.category(ch)
    if cat[0] in "CZ":  # control, format, surrogate, private use, unassigned, separators
        return f"the character U+{ord(ch):04X} ({cat})"
    if not ch.isascii() and any(c.isascii() for c in unicodedata.normalize("NFKC", ch)):
        return f"the character U+{ord(ch):04X}, which some servers read as {unicodedata.normalize('NFKC', ch)!r}"
    return None


def canonicalize_target(raw: str) -> CanonicalTarget:
    """The canonical form of an origin-form target (``/path?query``), or :class:`TargetRefused`."""
    if len(raw) > MAX_TARGET_LEN:
        raise TargetRefused(f"request target longer than {MAX_TARGET_LEN} characters", 414)
    raw_path, sep, query = raw.partition("?")
    if _PLAIN_PATH.match(raw_path) and "//" not in raw_path and "/." not in raw_path and _PLAIN_QUERY.match(query):
        return CanonicalTarget(raw_path, query if sep else None)  # the common case, already canonical
    if not _WIRE.match(raw):
        raise TargetRefused("request target must be visible ASCII (characters outside it must be percent-encoded)")
    if "#" in raw:
        raise TargetRefused("request target contains a '#' fragment (clients never send one)")
    if not raw_path.startswith("/"):
        raise TargetRefused("request path must start with '/'")
    if _BAD_ESCAPE.search(raw):
        raise TargetRefused("request target has a '%' that does not start a percent-escape (%XX)")
    low = raw_path.lower()
    for escape, what in _ENCODED_REFUSED.items():
        if escape in low:
            raise TargetRefused(f"request path contains {what}")
    try:
        path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError:
        raise TargetRefused("request path has percent-escapes that are not UTF-8") from None
    for ch in _SAFE_CHARS.sub("", path):
        why = _refuse_char(ch)
        if why is not None:
            raise TargetRefused(f"request path contains {why}")
    path = _MULTI_SLASH.sub("/", path)
    if "/." in path and any(seg in (".", "..") for seg in path.split("/")):
        raise TargetRefused("request path contains '.' or '..' segments")
    return CanonicalTarget(path, query if sep else None)


def canonical_request_path(path: str) -> tuple[str | None, str | None, str]:
    """``(decoded path, query string, why)`` as the engine judges them; the path is ``None`` when refused."""
    try:
        target = canonicalize_target(path)
    except TargetRefused as exc:
        return None, None, str(exc)
    return target.path, target.query, ""
