"""Matching primitives shared by the compiled engine and the reference implementation.

Globs (binaries, L7 paths, query values): ``*`` matches within one path segment,
``**`` matches across ``/`` (``/a/**/b`` also matches ``/a/b``), a trailing ``/**``
also matches the text before it (``/a/**`` matches ``/a``), ``?`` is one character
other than ``/``. Everything else is literal.

:func:`glob_to_regex` is the written specification (and the test oracle); the engine
matches with :class:`~.globmatch.Glob`, which is linear in the text: a backtracking
regex on a path a sandbox chooses would be a denial of service.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import parse_qsl

from .globmatch import compile_glob
from .request_target import canonical_request_path

__all__ = [
    "canonical_request_path",
    "compile_glob",
    "compile_glob_regex",
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
        if c == "/" and n - i - 1 >= 2 and pattern[i + 1 :].strip("*") == "":
            out.append("(?:/.*)?")  # trailing "/**": the base itself, or anything below it
            break
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


@lru_cache(maxsize=1024)
def compile_glob_regex(pattern: str) -> re.Pattern[str]:
    """The glob as a (backtracking) regex: the specification, for tests and the reference implementation only."""
    return re.compile(glob_to_regex(pattern))


def _label_regex(label: str) -> str:
    """One host label's wildcards as regex text: ``*`` any run of label characters, ``?`` one."""
    return "".join("[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c) for c in label)


@lru_cache(maxsize=1024)
def compile_label_glob(label: str) -> re.Pattern[str]:
    """A first-label host wildcard (``*-aiplatform``): ``*`` any run of label characters."""
    return re.compile("(?:" + _label_regex(label) + r")\Z")


def has_inner_wildcard(pattern: str) -> bool:
    """Whether a (normalised) host pattern has a ``*`` label after its first (``*.s3.*.amazonaws.com``)."""
    return "*" in pattern.partition(".")[2]


def fixed_host_suffix(pattern: str) -> str:
    """The labels after a host pattern's last wildcard label (``amazonaws.com`` for ``*.s3.*.amazonaws.com``):
    the engine indexes inner-wildcard patterns under it."""
    labels = pattern.split(".")
    last = max(i for i, label in enumerate(labels) if "*" in label or "?" in label)
    return ".".join(labels[last + 1 :])


@lru_cache(maxsize=1024)
def compile_host_pattern(pattern: str) -> re.Pattern[str]:
    """A wildcard host pattern as one anchored regex over the whole host, upstream's ``glob.match`` with the ``.``
    delimiter: ``**`` (whole first label) one or more labels, a whole-label ``*`` exactly one label, ``*``/``?``
    inside the first label any run of / one label character(s). The written specification for inner labels."""
    first, _, rest = pattern.partition(".")
    head = r"[^.]+(?:\.[^.]+)*" if first == "**" else _label_regex(first)
    tail = "".join(r"\.[^.]+" if label == "*" else r"\." + re.escape(label) for label in rest.split("."))
    return re.compile("(?:" + head + tail + r")\Z")


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
    for k, values in query.items():
        result[str(k)] = [values] if isinstance(values, str) else [str(x) for x in values]
    return result
