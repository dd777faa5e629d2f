"""Provider credential placeholders in request bodies, on endpoints that opt in (upstream's
``request_body_credential_rewrite: true``, docs/gateway.md "Providers").

Upstream rewrites a placeholder anywhere in a UTF-8 JSON, form or text body. clawfleet keeps its rule for every
other place (:mod:`.credentials`): the placeholder must fill a place entirely, so a body that quotes it inside the
sandbox's own text (a chat message, a log line the API echoes back) never carries the value:

* ``application/json`` (and ``+json``): a string *value* (not a key) that is exactly one placeholder, at any depth;
  the body must be valid UTF-8 JSON, and only that string's bytes change (no re-serialisation: numbers, key order,
  duplicate keys and spacing stay as the sandbox sent them);
* ``application/x-www-form-urlencoded``: a parameter value that is exactly one placeholder (raw or
  percent-encoded);
* anything else (``text/*`` included) is forwarded unchanged.

The gateway buffers such a body up to :data:`MAX_REWRITE_BYTES` (upstream's 256 KiB) and forwards it with an exact
``Content-Length``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import quote, unquote_to_bytes

__all__ = ["MAX_REWRITE_BYTES", "rewrite_body"]

MAX_REWRITE_BYTES = 256 * 1024
# A JSON string token. Outside strings JSON has no '"', so scanning a valid document from its start finds exactly
# its string tokens, in order.
_JSON_STRING = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\.)*"')
_SPACE = re.compile(rb"[ \t\r\n]*")

#: placeholder bytes -> the real value, or None when it may not go here (:meth:`.credentials.Secrets.fill`)
Fill = Callable[[bytes], "bytes | None"]


def _media_type(ctype: str | None) -> str:
    return (ctype or "").partition(";")[0].strip().lower()


def _json(body: bytes, fill: Fill) -> bytes:
    try:
        json.loads(body.decode("utf-8"))
    except ValueError:  # not UTF-8 JSON: nothing is a well-defined string value, nothing is filled
        return body
    out: list[bytes] = []
    last = 0
    for m in _JSON_STRING.finditer(body):
        token = m.group()[1:-1]
        if b"\\" in token:  # an escaped spelling of a placeholder is not the placeholder
            continue
        after = _SPACE.match(body, m.end())
        if after is not None and body[after.end() : after.end() + 1] == b":":
            continue  # a key, not a value
        real = fill(token)
        if real is None:
            continue
        try:
            text = real.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a JSON string holds text: a binary value stays out
        out += [body[last : m.start()], json.dumps(text).encode("ascii")]
        last = m.end()
    return body if not out else b"".join(out) + body[last:]


def _form(body: bytes, fill: Fill) -> bytes:
    parts = []
    changed = False
    for part in body.split(b"&"):
        key, eq, value = part.partition(b"=")
        if eq:
            real = fill(unquote_to_bytes(value.replace(b"+", b" ")))
            if real is not None:
                part = key + b"=" + quote(real, safe="").encode("ascii")
                changed = True
        parts.append(part)
    return b"&".join(parts) if changed else body


def rewrite_body(body: bytes, ctype: str | None, fill: Fill) -> bytes:
    """``body`` with each placeholder that fills a JSON string value or a form value replaced (``body`` itself when
    nothing was)."""
    media = _media_type(ctype)
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return _json(body, fill)
    if media == "application/x-www-form-urlencoded":
        return _form(body, fill)
    return body
