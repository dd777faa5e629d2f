"""Hop-by-hop header fields (RFC 9110 7.6.1): what one connection says that the next one must not hear.

A proxy drops the fields that are hop-by-hop by definition (``Keep-Alive``, ``Proxy-*``) and every field that
the message's ``Connection`` header names (case-insensitive tokens, comma lists, any number of ``Connection``
lines), in both directions.

Two things keep the sandbox from turning this against the gateway:

* the gateway strips the sandbox's named fields *before* it adds its own (credentials, the router identity
  proof): a field the gateway puts in is never removed because the sandbox named it;
* the ``Connection`` header that goes on keeps only ``close``, ``keep-alive`` and ``upgrade``: the sandbox cannot
  make the origin (or a proxy after the gateway) drop a field the gateway added by naming it there.

Fields the gateway frames or judges a message by are kept even when named (``Host``, ``Content-Length``,
``Transfer-Encoding``, ``Content-Type``, ``Content-Encoding``): RFC 9110 forbids naming a field meant for every
recipient, and dropping one would send the origin a message other than the one h11 framed and the policy judged.
``Upgrade`` is left to :mod:`.upgrade`, which decides whether a switch is offered at all.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ALWAYS", "strip_hop_by_hop"]

#: Hop-by-hop whatever ``Connection`` says.
ALWAYS = frozenset({b"proxy-connection", b"proxy-authorization", b"proxy-authenticate", b"keep-alive"})
# never dropped on a Connection option: see the module docstring
_KEPT = frozenset({b"connection", b"host", b"content-length", b"transfer-encoding", b"content-type",
                   b"content-encoding", b"upgrade"})  # fmt: skip
# the connection options that go on to the next hop (they are about the connection itself, they name no field the
# gateway adds); any other token names a field, which is dropped here and so has nothing left to name
_OPTIONS = (b"close", b"keep-alive", b"upgrade")


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields to forward. ``headers`` come from h11 (lower-case names)."""
    headers = list(headers)
    if not any(k == b"connection" or k in ALWAYS for k, _ in headers):
        return headers  # the common case: nothing to drop, nothing to rewrite
    named = {t for k, v in headers if k == b"connection" for t in _tokens(v)}
    drop = ALWAYS | (named - _KEPT)
    options = [o for o in _OPTIONS if o in named]
    out = [(k, v) for k, v in headers if k not in drop and k != b"connection"]
    if options:  # one Connection line, whatever the sandbox or the origin sent
        out.append((b"connection", b", ".join(options)))
    return out
