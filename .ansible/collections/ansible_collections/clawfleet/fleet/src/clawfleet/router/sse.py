"""Incremental Server-Sent Events framing: bytes in, events out, and back to bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Event:
    data: str | None = None
    event: str | None = None
    other: list[str] = field(default_factory=list)  # id:, retry:, comments: passed through as is

    def encode(self) -> bytes:
        lines = list(self.other)
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.data is not None:
            lines.extend(f"data: {line}" for line in self.data.split("\n"))
        return ("\n".join(lines) + "\n\n").encode()


class SSEParser:
    """Feed raw bytes as they arrive; get complete events. Handles \\r\\n and events split across reads."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[Event]:
        self._buf += chunk
        if b"\r" in self._buf:
            # a lone trailing \r may be the first half of \r\n: keep it for the next read
            keep = self._buf.endswith(b"\r")
            body = self._buf[:-1] if keep else self._buf
            self._buf = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep else b"")
        events = []
        while True:
            idx = self._buf.find(b"\n\n")
            if idx < 0:
                break
            raw, self._buf = self._buf[:idx], self._buf[idx + 2 :]
            ev = self._parse(raw.decode("utf-8", errors="replace"))
            if ev is not None:
                events.append(ev)
        return events

    def close(self) -> list[Event]:
        rest, self._buf = self._buf.strip(), b""
        if not rest:
            return []
        ev = self._parse(rest.decode("utf-8", errors="replace"))
        return [ev] if ev is not None else []

    @staticmethod
    def _parse(raw: str) -> Event | None:
        ev = Event()
        data: list[str] = []
        for line in raw.split("\n"):
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif line.startswith("event:"):
                ev.event = line[6:].strip()
            elif line:
                ev.other.append(line)
        if data:
            ev.data = "\n".join(data)
        if ev.data is None and ev.event is None and not ev.other:
            return None
        return ev


def stream_error_event(protocol: str, message: str) -> bytes:
    """An error event in the stream format of the client's API, ending a stream that broke upstream.

    Starts with a blank line so a half-sent event before it is terminated (and fails to parse on its own)
    instead of swallowing the error. Anthropic and Responses streams have a typed ``error`` event; chat and
    completions streams carry ``{"error": ...}`` in a data line, which the OpenAI SDK raises as an APIError.
    """
    if protocol == "messages":
        ev = Event(json.dumps({"type": "error", "error": {"type": "api_error", "message": message}}), "error")
    elif protocol == "responses":
        ev = Event(json.dumps({"type": "error", "code": "upstream_reset", "message": message, "param": None}), "error")
    else:
        ev = Event(json.dumps({"error": {"message": message, "type": "upstream_reset", "code": "upstream_reset"}}))
    return b"\n" + ev.encode()
