"""Stable placeholders for findings, and restoring them in answers, streamed or not.

``<<EMAIL_1>>``-style placeholders are stable within a request (the same value
always gets the same placeholder), so the model can refer to them
consistently. :class:`StreamRestorer` holds back a tail that may be the
beginning of a placeholder split across chunks (``<<EMA`` + ``IL_1>>``) and
releases it once it is complete or provably not a placeholder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from clawfleet.router.classifier import Finding
from clawfleet.router.extract import SEPARATOR, Extracted

PLACEHOLDER = re.compile(r"<<([A-Z][A-Z0-9_]{0,40}_\d{1,6})>>")
# a suffix that could still grow into a placeholder
_PARTIAL = re.compile(r"<(?:<(?:[A-Z][A-Z0-9_]{0,48}(?:>)?)?)?\Z")


class Redactor:
    """Maps original values to placeholders for one request, and back."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.originals: dict[str, str] = {}

    def placeholder(self, ftype: str, value: str) -> str:
        key = (ftype, value)
        ph = self._by_value.get(key)
        if ph is None:
            n = self._counts.get(ftype, 0) + 1
            self._counts[ftype] = n
            label = re.sub(r"[^A-Z0-9_]", "_", ftype.upper())
            ph = f"<<{label}_{n}>>"
            self._by_value[key] = ph
            self.originals[ph[2:-2]] = value
        return ph

    def __bool__(self) -> bool:
        return bool(self.originals)

    def redact(self, extracted: Extracted, findings: Sequence[Finding]) -> int:
        """Replace each finding in the body slots it came from. Returns the number replaced."""
        starts = extracted.segment_starts()
        per_slot: dict[int, list[tuple[int, int, str]]] = {}
        seg = 0
        for f in sorted(findings, key=lambda f: f.start):
            while seg + 1 < len(starts) and starts[seg + 1] <= f.start:
                seg += 1
            base = starts[seg]
            text_len = len(extracted.texts[seg])
            s, e = f.start - base, min(f.end - base, text_len)  # clip a span that crosses the separator
            if s < 0 or s >= text_len:
                continue
            value = extracted.texts[seg][s:e]
            per_slot.setdefault(seg, []).append((s, e, self.placeholder(f.type, value)))
        for seg, spans in per_slot.items():
            text = extracted.texts[seg]
            out, pos = [], 0
            for s, e, ph in spans:
                out.append(text[pos:s])
                out.append(ph)
                pos = e
            out.append(text[pos:])
            container, key = extracted.slots[seg]
            container[key] = "".join(out)
            extracted.texts[seg] = container[key]
        extracted._joined = None
        return sum(len(v) for v in per_slot.values())

    # ------------------------------------------------------------ restoring
    def restore(self, text: str, *, json_escaped: bool = False) -> str:
        if "<<" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            original = self.originals.get(m.group(1))
            if original is None:
                return m.group()
            return json.dumps(original)[1:-1] if json_escaped else original

        return PLACEHOLDER.sub(sub, text)

    def restore_json(
        self, node: Any, *, escaped_keys: frozenset[str] = frozenset({"arguments", "partial_json"})
    ) -> Any:
        """Restore placeholders in every string of a parsed JSON document, in place where possible."""
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str):
                    node[k] = self.restore(v, json_escaped=k in escaped_keys)
                else:
                    node[k] = self.restore_json(v, escaped_keys=escaped_keys)
            return node
        if isinstance(node, list):
            for i, v in enumerate(node):
                node[i] = self.restore(v) if isinstance(v, str) else self.restore_json(v, escaped_keys=escaped_keys)
            return node
        return node

    def stream(self, *, json_escaped: bool = False) -> StreamRestorer:
        return StreamRestorer(self, json_escaped=json_escaped)


class StreamRestorer:
    """Restores placeholders in a stream of text deltas for one output (one choice, one content block)."""

    __slots__ = ("_held", "_json", "_redactor")

    def __init__(self, redactor: Redactor, *, json_escaped: bool = False) -> None:
        self._redactor = redactor
        self._json = json_escaped
        self._held = ""

    @property
    def pending(self) -> bool:
        return bool(self._held)

    def feed(self, delta: str) -> str:
        text = self._held + delta
        self._held = ""
        m = _PARTIAL.search(text, max(0, len(text) - 52))
        if m is not None:
            self._held = text[m.start() :]
            text = text[: m.start()]
        return self._redactor.restore(text, json_escaped=self._json)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._redactor.restore(text, json_escaped=self._json)


__all__ = ["PLACEHOLDER", "SEPARATOR", "Redactor", "StreamRestorer"]
