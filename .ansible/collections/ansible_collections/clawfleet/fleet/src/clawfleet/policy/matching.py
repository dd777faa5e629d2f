"""Matching primitives shared by the compiled engine and the reference implementation.

Globs (binaries, L7 paths, query values): ``*`` matches within one path segment,
``**`` matches across ``/`` (``/a/**/b`` also matches ``/a/b``), ``?`` is one
character other than ``/``. Everything else is literal.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import parse_qsl, unquote

__all__ = [
    "canonical_request_path",
    "compile_glob",
    "compile_label_glob",
    "glob_to_regex",
    "normalize_request_host",
    "parse_query",
]


def glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            if j - i >= 2:
                at_start = i == 0 or pattern[i - 1] == "/"
                if at_start and j < n and pattern[j] == "/":
                    out.append("(?:.*/)?")  # "**/" : zero or more whole segments
                    i = j + 1
                    continue
                out.append(".*")
            else:
                out.append("[^/]*")
            i = j
            continue
        out.append("[^/]" if c == "?" else re.escape(c))
        i += 1
    return "(?s:" + "".join(out) + r")\Z"


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(pattern))


@lru_cache(maxsize=1024)
def compile_label_glob(label: str) -> re.Pattern[str]:
    """A first-label host wildcard (``*-aiplatform``): ``*`` any run of label characters."""
    body = "".join("[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c) for c in label)
    return re.compile("(?:" + body + r")\Z")


@lru_cache(maxsize=16384)
def normalize_request_host(host: str) -> str | None:
    """Lower-case, strip a trailing dot and IPv6 brackets, IDNA-encode; ``None`` if not a host."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.endswith("."):
        h = h[:-1]
    if not h or len(h) > 253:
        return None
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        pass
    if not h.isascii():
        try:
            h = h.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    for label in h.split("."):
        if not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label):
            return None
    return h


def canonical_request_path(path: str) -> tuple[str | None, str | None, str]:
    """Return ``(path, query_string, why)``; ``path`` is ``None`` when the request path is refused.

    Percent-escapes are decoded before matching; encoded slashes/backslashes, NUL and
    ``.``/``..`` segments are refused rather than guessed at (upstream canonicaliser).
    """
    raw, _, qs = path.partition("?")
    raw = raw.partition("#")[0]
    if not raw.startswith("/"):
        return None, None, "request path must start with '/'"
    low = raw.lower()
    if "%2f" in low or "%5c" in low or "%00" in low:
        return None, None, "request path contains an encoded '/', '\\' or NUL"
    try:
        decoded = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        return None, None, "request path has percent-escapes that are not UTF-8"
    if "\\" in decoded or "\x00" in decoded:
        return None, None, "request path contains '\\' or NUL"
    decoded = re.sub(r"/{2,}", "/", decoded)
    if any(seg in (".", "..") for seg in decoded.split("/")):
        return None, None, "request path contains '.' or '..' segments"
    return decoded, qs if "?" in path else None, ""


def parse_query(query: str | Mapping[str, str | Sequence[str]] | None) -> dict[str, list[str]]:
    """Query string or mapping -> ``{param: [values...]}`` (values percent-decoded)."""
    if query is None:
        return {}
    if isinstance(query, str):
        out: dict[str, list[str]] = {}
        for k, v in parse_qsl(query.lstrip("?"), keep_blank_values=True):
            out.setdefault(k, []).append(v)
        return out
    result: dict[str, list[str]] = {}
    for k, v in query.items():
        result[str(k)] = [v] if isinstance(v, str) else [str(x) for x in v]
    return result
