"""Bounded request-body buffering for endpoints with body selectors (protocol graphql / mcp / json-rpc).

The policy engine judges the whole body (:mod:`clawfleet.policy.l7_body`), so the gateway reads it first, up
to the endpoint's limit, and then forwards exactly the bytes it judged: the framing is rewritten to one
``Content-Length`` (a chunked body is de-chunked; its trailers are dropped), so the origin cannot see a body the
engine did not. What the gateway refuses before the engine sees anything:

* a body over the limit: ``413`` naming the limit and the endpoint's policy (a declared ``Content-Length`` over
  it is refused before a byte of the body is read);
* a ``Content-Encoding`` other than ``identity`` (``415``): the engine would judge compressed bytes the origin
  inflates into something else;
* a repeated ``Content-Type`` or ``Content-Encoding`` header (``400``): which one the origin reads is not
  defined;
* a body that ends early or has broken chunked framing (``400``, from h11).
"""

from __future__ import annotations

from collections.abc import Sequence

import h11

__all__ = ["BodyRefused", "body_headers", "read_body", "reframe"]


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason


Headers = Sequence[tuple[bytes, bytes]]


def body_headers(headers: Headers, limit: int, where: str) -> str | None:
    """Check the request headers before buffering; return the content type (``None`` when absent)."""
    ctypes = [v for k, v in headers if k == b"content-type"]
    encodings = [v for k, v in headers if k == b"content-encoding"]
    if len(ctypes) > 1 or len(encodings) > 1:
        raise BodyRefused(400, "ambiguous body headers", "Content-Type or Content-Encoding is repeated")
    for enc in encodings:
        if enc.strip().lower() not in (b"", b"identity"):
            raise BodyRefused(
                415,
                f"Content-Encoding {enc.decode('latin-1')[:40]!r} refused on {where}",
                "a body-inspecting endpoint judges the body as sent; send it uncompressed",
            )
    for k, v in headers:
        if k == b"content-length" and v.isdigit() and int(v) > limit:
            raise BodyRefused(413, f"request body of {int(v)} bytes is over the {limit}-byte limit of {where}",
                              f"body inspection buffers at most {limit} bytes (max_body_bytes)")  # fmt: skip
    return ctypes[0].decode("latin-1") if ctypes else None


async def read_body(conn: h11.Connection, read, limit: int, where: str) -> bytes:
    """Read the rest of the current request's body from ``conn`` (``read`` fetches more bytes), at most ``limit``.

    Raises :class:`BodyRefused` past the limit; :class:`h11.RemoteProtocolError` on broken framing.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(await read())
            continue
        if isinstance(ev, h11.Data):
            size += len(ev.data)
            if size > limit:
                raise BodyRefused(413, f"request body is over the {limit}-byte limit of {where}",
                                  f"body inspection buffers at most {limit} bytes (max_body_bytes)")  # fmt: skip
            chunks.append(bytes(ev.data))
            continue
        if isinstance(ev, h11.EndOfMessage):
            return b"".join(chunks)
        raise h11.RemoteProtocolError("the client closed the connection inside the request body")


def reframe(headers: Headers, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers to forward a buffered body with: its framing replaced by one exact ``Content-Length``."""
    framed = any(k in (b"content-length", b"transfer-encoding") for k, _ in headers)
    out = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding", b"expect")]
    if framed or body:
        out.append((b"content-length", str(len(body)).encode()))
    return out
