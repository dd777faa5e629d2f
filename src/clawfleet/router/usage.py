"""Token counts of an answer: the provider's ``usage`` when it sends one, an estimate when it does not.

Shapes read: OpenAI ``usage.prompt_tokens/completion_tokens`` (chat, completions, embeddings; in a stream
only with ``stream_options.include_usage``), ``usage.input_tokens/output_tokens`` (Responses, Anthropic;
Anthropic streams carry input in ``message_start`` and output in ``message_delta``; Responses streams in
``response.completed``). Without any, a stream or body is estimated at 4 bytes per token, so an agent
cannot avoid its token limits by asking for answers without usage.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from clawfleet.router.sse import SSEParser

_BYTES_PER_TOKEN = 4


def _read(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    inp = usage.get("prompt_tokens", usage.get("input_tokens"))
    out = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(inp, int) and not isinstance(out, int):
        return None
    return (inp if isinstance(inp, int) else 0, out if isinstance(out, int) else 0)


def from_document(doc: Any) -> tuple[int, int] | None:
    if not isinstance(doc, dict):
        return None
    found = _read(doc.get("usage"))
    if found is None:
        for inner in ("message", "response"):  # message_start, response.completed
            if isinstance(doc.get(inner), dict):
                found = _read(doc[inner].get("usage"))
                if found is not None:
                    break
    return found


class UsageMeter:
    """Collects the usage of one answer (a body or a stream); ``tokens(bytes_in)`` gives (input, output)."""

    def __init__(self) -> None:
        self.input: int | None = None
        self.output: int | None = None
        self.bytes_out = 0
        self._sse: SSEParser | None = None

    def _take(self, found: tuple[int, int] | None) -> None:
        if found is None:
            return
        inp, out = found
        if inp:
            self.input = max(self.input or 0, inp)
        self.output = max(self.output or 0, out)

    def feed_body(self, content: bytes) -> None:
        self.bytes_out += len(content)
        if b'"usage"' in content:
            with contextlib.suppress(ValueError):
                self._take(from_document(json.loads(content)))

    def feed_chunk(self, chunk: bytes) -> None:
        self.bytes_out += len(chunk)
        if self._sse is None:
            self._sse = SSEParser()
        for ev in self._sse.feed(chunk):
            self.feed_event_data(ev.data)

    def feed_event_data(self, data: str | None) -> None:
        if data and '"usage"' in data:
            with contextlib.suppress(ValueError):
                self._take(from_document(json.loads(data)))

    def tokens(self, bytes_in: int) -> tuple[int, int]:
        inp = self.input if self.input is not None else bytes_in // _BYTES_PER_TOKEN
        out = self.output if self.output is not None else self.bytes_out // _BYTES_PER_TOKEN
        return inp, out
