"""Stable placeholders for findings, and restoring them in answers, streamed or not.

``<<EMAIL_1>>``-style placeholders are stable within a request (the same value
always gets the same placeholder), so the model can refer to them
consistently. :class:`StreamRestorer` holds back a tail that may be the
beginning of a placeholder split across chunks (``<<EMA`` + ``IL_1>>``) and
releases it once it is complete or provably not a placeholder.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from typing import Any

from clawfleet.router.classifier import Finding
from clawfleet.router.extract import SEPARATOR, Extracted
from clawfleet.router.scan import BodyScan, RequestFindings

PLACEHOLDER = re.compile(r"<<([A-Z][A-Z0-9_]{0,40}_\d{1,6})>>")
# shorter pieces (a stray letter of a finding cut at a field boundary) are not worth replacing everywhere
_MIN_VALUE = 3
# a suffix that could still grow into a placeholder
_PARTIAL = re.compile(r"<(?:<(?:[A-Z][A-Z0-9_]{0,48}(?:>)?)?)?\Z")


class Redactor:
    """Maps original values to placeholders for one request, and back.

    Redaction is by *value*: once a value is detected anywhere in a request,
    every occurrence of it, in any case, in any string value or key of the
    body, is replaced (the model may repeat a name the classifier only
    recognised once, and the agent sends the router's own restored answers
    back). A value the content view found split across parts is cut out of
    each part it spans, so no part carries its piece in clear.
    """

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_folded: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self.originals: dict[str, str] = {}

    def placeholder(self, ftype: str, value: str) -> str:
        folded = value.lower()
        key = (ftype, folded)
        ph = self._by_value.get(key)
        if ph is None:
            ph = self._by_folded.get(folded)
        if ph is None:
            n = self._counts.get(ftype, 0) + 1
            self._counts[ftype] = n
            label = re.sub(r"[^A-Z0-9_]", "_", ftype.upper())
            ph = f"<<{label}_{n}>>"
            self.originals[ph[2:-2]] = value
            self._by_folded.setdefault(folded, ph)
        self._by_value[key] = ph
        return ph

    def __bool__(self) -> bool:
        return bool(self.originals)

    def redact(self, found: RequestFindings) -> int:
        """Rewrite the request body in place. Returns the number of replacements made."""
        count = self._cut_split_values(found.content, found.content_findings)
        self._register_field_values(found.scan, found.field_findings)
        return count + self._replace_everywhere(found.scan)

    def _cut_split_values(self, content: Extracted, findings: Sequence[Finding]) -> int:
        starts, pos = [], 0
        for text in content.texts:
            starts.append(pos)
            pos += len(text)
        view = "".join(content.texts)
        edits: dict[int, list[tuple[int, int, str]]] = {}
        for f in findings:
            value = view[f.start : f.end]
            ph = self.placeholder(f.type, value)
            first = bisect.bisect_right(starts, f.start) - 1
            last = bisect.bisect_right(starts, f.end - 1) - 1
            if first == last:
                continue  # inside one part: the value pass below replaces it (and its every other occurrence)
            for seg in range(first, last + 1):
                s = max(f.start - starts[seg], 0)
                e = min(f.end - starts[seg], len(content.texts[seg]))
                edits.setdefault(seg, []).append((s, e, ph if seg == first else ""))
        for seg, spans in edits.items():
            container, key = content.slots[seg]
            text = container[key]
            for s, e, repl in sorted(spans, reverse=True):
                text = text[:s] + repl + text[e:]
            container[key] = text
        return sum(len(v) for v in edits.values())

    def _register_field_values(self, scan: BodyScan, findings: Sequence[Finding]) -> None:
        for f in findings:
            first = bisect.bisect_right(scan.starts, f.start) - 1
            for index in range(max(first, 0), len(scan.segments)):
                seg_start = scan.starts[index]
                if seg_start >= f.end:
                    break
                seg = scan.segments[index]
                s, e = max(f.start - seg_start, 0), min(f.end - seg_start, len(seg.text))
                if seg.is_key and not (f.start >= seg_start and f.end <= seg_start + len(seg.text)):
                    continue  # a finding that only reaches into a key from its value: the key is structure
                piece = seg.text[s:e].strip()
                if len(piece) >= _MIN_VALUE:
                    self.placeholder(f.type, piece)

    def _replace_everywhere(self, scan: BodyScan) -> int:
        if not self._by_folded:
            return 0
        values = sorted(self._by_folded, key=len, reverse=True)
        pattern = re.compile(f"({PLACEHOLDER.pattern})|" + "|".join(re.escape(v) for v in values), re.IGNORECASE)
        replaced = 0

        def sub(m: re.Match[str]) -> str:
            nonlocal replaced
            if m.group(1):
                return m.group()  # an existing placeholder is never rewritten
            replaced += 1
            ph = self._by_folded.get(m.group().lower())
            if ph is None:  # re's case-insensitive match and str.lower disagree on a few letters
                ph = next(p for v, p in self._by_folded.items() if re.fullmatch(re.escape(v), m.group(), re.I))
            return ph

        renames: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
        for seg in scan.segments:
            if seg.is_key:
                new_key = pattern.sub(sub, seg.key)
                if new_key != seg.key:
                    renames.setdefault(id(seg.container), (seg.container, {}))[1][seg.key] = new_key
                continue
            current = seg.container[seg.key]
            if isinstance(current, str):
                seg.container[seg.key] = pattern.sub(sub, current)
        # keys last: value segments address their containers by the old keys
        for container, mapping in renames.values():
            items = list(container.items())
            container.clear()
            for key, value in items:
                container[mapping.get(key, key)] = value
        return replaced

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
