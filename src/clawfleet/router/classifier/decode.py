"""Encoded payloads: base64, hex, URL-encoding and JSON ``\\uXXXX`` escapes, decoded one level for classification.

Agents pass data around wrapped (a tool result holding base64 of a CSV, a URL with ``%40`` in it); the model can
read it, so the classifier must too. Candidate tokens are found in one linear pass each; a token counts only if it
decodes to mostly printable UTF-8, which random bytes (hashes, keys, images) almost never do.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Iterator

from clawfleet.router.classifier.findings import byte_spans, re2_bytes

MAX_TOKEN = 64 * 1024  # longer tokens are not decoded
MAX_DECODED = 256 * 1024  # total decoded characters per text: the decoding pass stays bounded

# Linear time: tokens are maximal runs between blanks and quotes (each character is scanned once); escapes are
# looked for inside a token, never by a pattern with a leading unbounded run that would restart at every
# character of a long run without one (quadratic).
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
_HEX = re.compile(r"[0-9A-Fa-f]{16,}")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ESC = re.compile(r"\\u([0-9A-Fa-f]{4})")


def _printable(s: str) -> bool:
    if not s:
        return False
    ok = sum(1 for c in s if c.isprintable() or c in "\n\r\t")
    return ok >= 0.9 * len(s)


def _utf8(raw: bytes) -> str | None:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return s if _printable(s) else None


def _from_base64(token: str) -> str | None:
    body = token.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    urlsafe = "-" in body or "_" in body
    if urlsafe and ("+" in body or "/" in body):
        return None
    try:
        raw = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _utf8(raw)


def _from_hex(token: str) -> str | None:
    if len(token) % 2:
        return None
    return _utf8(bytes.fromhex(token))


def _from_url(token: str) -> str | None:
    try:
        text = urllib.parse.unquote(token, errors="strict")
    except UnicodeDecodeError:
        return None
    return text if _printable(text) else None


def _from_json_escapes(token: str) -> str | None:
    # a doubly serialised JSON string writes the escape's backslash twice
    text = _ESC.sub(lambda m: chr(int(m.group(1), 16)), token.replace("\\\\", "\\"))
    try:  # join surrogate pairs (\ud83d\ude00) into one character
        text = text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return None
    return text if _printable(text) else None


_LONG_TOKEN = re.compile(r"(?<![^\s\"'<>])[^\s\"'<>]{16,}")  # maximal tokens of 16 characters or more
# The same tokens in an ASCII text, found by RE2's DFA instead of ``re`` trying the look-behind at every character
# (a third of the time of a clean 100 KB prompt). In ASCII, ``re``'s \s is exactly [\t\n\v\f\r\x1c-\x1f ]. No
# look-behind is needed: the leftmost position from which 16 non-delimiters follow is the first character of a
# token of 16 or more, and the greedy run then ends at its delimiter, so every match is a whole maximal token.
_LONG_TOKEN_ASCII = re2_bytes(rb"[^\t\n\v\f\r\x1c-\x1f \"'<>]{16,}")
# A short token holding an escape: a maximal token of 1-15 characters with a ``%`` or ``\u`` in it.
_SHORT_MARKED = re.compile(r"(?<![^\s\"'<>])(?=[^\s\"'<>]{0,14}(?:%|\\u))[^\s\"'<>]{1,15}(?![^\s\"'<>])")


def _tokens(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the tokens of ``text`` (maximal runs without blanks, quotes and ``<>``) that can hold an
    encoding, in order:
    every token of 16 characters or more, and the shorter ones that contain ``%`` or ``\\u``.

    The same tokens the token loop before it gave (``benchmarks/classifier_before/decode.py``), filtered, without
    a Python step per token: a 100 KB text holds
    ~12,000 tokens, of which ~1,000 are long. ``_LONG_TOKEN`` starts a match only at a token's start and reads
    each character at most twice. Short tokens are found by ``_SHORT_MARKED`` in the gaps between long tokens
    that hold a ``%`` or ``\\u``: an escape inside a long token belongs to it, and looking at each such escape
    (``"Ana" + "%41" * n``), or at each escape with Python steps of its own (``("Hi " + "%4") * n``), made those
    shapes up to 2.5x slower than the classifier before (2026-12-07). A ``\\u`` never straddles a token's edge:
    its backslash is no delimiter.
    """
    if text.isascii():
        long = list(byte_spans(_LONG_TOKEN_ASCII, text.encode("ascii")))
    else:
        long = [m.span() for m in _LONG_TOKEN.finditer(text)]
    if "%" not in text and "\\u" not in text:
        yield from long
        return
    short: list[tuple[int, int]] = []
    lo = 0
    for t_start, t_end in [*long, (len(text), len(text))]:
        if text.find("%", lo, t_start) != -1 or text.find("\\u", lo, t_start) != -1:
            short.extend(m.span() for m in _SHORT_MARKED.finditer(text, lo, t_start))
        lo = t_end
    if not short:
        yield from long
        return
    merged = sorted(long + short)  # disjoint tokens: start order is text order
    yield from merged


def _candidates(text: str) -> Iterator[tuple[int, int, str | None]]:
    for t_start, t_end in _tokens(text):
        value = text[t_start:t_end]
        if "%" in value and _PERCENT.search(value):
            yield t_start, t_end, _from_url(value)
        if "\\u" in value:
            yield t_start, t_end, _from_json_escapes(value)
        if len(value) < 16:
            continue
        for m in _BASE64.finditer(value):
            run = m.group()
            hexed = _HEX.fullmatch(run)
            plain = _from_hex(run) if hexed else None
            if plain is None:
                plain = _from_base64(run)
            yield t_start + m.start(), t_start + m.end(), plain


def decoded_tokens(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, decoded text) for each encoded token in ``text`` that decodes to readable text."""
    budget = MAX_DECODED
    for start, end, plain in _candidates(text):
        if plain is None or end - start > MAX_TOKEN or plain == text[start:end]:
            continue
        budget -= len(plain)
        if budget < 0:
            return
        yield start, end, plain
