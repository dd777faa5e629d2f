"""Placeholder restoration inside streamed answers, per protocol, for redact routes.

Each text-bearing output (a choice, a content block, a Responses item) gets its
own :class:`~clawfleet.router.redact.StreamRestorer`; text it holds back is
released when that output ends, as one extra delta before the end marker.
"""

from __future__ import annotations

import json
from typing import Any

from clawfleet.router.redact import Redactor, StreamRestorer
from clawfleet.router.sse import Event


class StreamRestoreTransform:
    def __init__(self, protocol: str, redactor: Redactor) -> None:
        self.protocol = protocol  # chat | completions | responses | messages
        self.redactor = redactor
        self._restorers: dict[Any, StreamRestorer] = {}
        self._last_chunk: dict[str, Any] = {}

    def _r(self, key: Any, *, json_escaped: bool = False) -> StreamRestorer:
        r = self._restorers.get(key)
        if r is None:
            r = self._restorers[key] = self.redactor.stream(json_escaped=json_escaped)
        return r

    def _flush(self, key: Any) -> str:
        r = self._restorers.pop(key, None)
        return r.flush() if r is not None else ""

    def on_event(self, ev: Event) -> list[Event]:
        if ev.data is None:
            return [ev]
        if ev.data.strip() == "[DONE]":
            return [*self.finish(), ev]
        try:
            doc = json.loads(ev.data)
        except json.JSONDecodeError:
            ev.data = self.redactor.restore(ev.data)
            return [ev]
        if not isinstance(doc, dict):
            return [ev]
        handler = getattr(self, f"_on_{self.protocol}")
        out: list[Event] = handler(ev, doc)
        return out

    def _dump(self, ev: Event, doc: dict[str, Any]) -> Event:
        ev.data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        return ev

    # ------------------------------------------------------------ OpenAI chat
    def _on_chat(self, ev: Event, doc: dict[str, Any]) -> list[Event]:
        self._last_chunk = {k: doc[k] for k in ("id", "object", "created", "model") if k in doc}
        for choice in doc.get("choices") or []:
            idx = choice.get("index", 0)
            delta = choice.get("delta") or {}
            for field in ("content", "reasoning_content", "refusal"):
                if isinstance(delta.get(field), str):
                    delta[field] = self._r((field, idx)).feed(delta[field])
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    fn["arguments"] = self._r(("tool", idx, call.get("index", 0)), json_escaped=True).feed(
                        fn["arguments"]
                    )
            if choice.get("finish_reason"):
                for field in ("content", "reasoning_content", "refusal"):
                    rest = self._flush((field, idx))
                    if rest:
                        delta[field] = (delta.get(field) or "") + rest
                for key in [k for k in self._restorers if k[0] == "tool" and k[1] == idx]:
                    rest = self._flush(key)
                    if rest:
                        delta.setdefault("tool_calls", []).append({"index": key[2], "function": {"arguments": rest}})
                choice["delta"] = delta
            for k, v in list(choice.items()):
                if k != "delta":
                    choice[k] = self.redactor.restore_json(v) if not isinstance(v, str) else self.redactor.restore(v)
        return [self._dump(ev, doc)]

    # ------------------------------------------------------------ OpenAI completions
    def _on_completions(self, ev: Event, doc: dict[str, Any]) -> list[Event]:
        self._last_chunk = {k: doc[k] for k in ("id", "object", "created", "model") if k in doc}
        for choice in doc.get("choices") or []:
            idx = choice.get("index", 0)
            if isinstance(choice.get("text"), str):
                choice["text"] = self._r(("text", idx)).feed(choice["text"])
            if choice.get("finish_reason"):
                choice["text"] = (choice.get("text") or "") + self._flush(("text", idx))
        return [self._dump(ev, doc)]

    # ------------------------------------------------------------ OpenAI responses
    def _on_responses(self, ev: Event, doc: dict[str, Any]) -> list[Event]:
        etype = str(doc.get("type", ""))
        key = (doc.get("item_id"), doc.get("output_index"), doc.get("content_index"), etype.rsplit(".", 1)[0])
        escaped = "function_call_arguments" in etype
        if etype.endswith(".delta") and isinstance(doc.get("delta"), str):
            doc["delta"] = self._r(key, json_escaped=escaped).feed(doc["delta"])
            return [self._dump(ev, doc)]
        out: list[Event] = []
        if etype.endswith(".done"):
            rest = self._flush(key)
            if rest:
                extra = {k: doc[k] for k in ("item_id", "output_index", "content_index") if k in doc}
                extra.update({"type": etype[: -len(".done")] + ".delta", "delta": rest})
                out.append(Event(data=json.dumps(extra, ensure_ascii=False), event=extra["type"] if ev.event else None))
        out.append(self._dump(ev, self.redactor.restore_json(doc)))
        return out

    # ------------------------------------------------------------ Anthropic messages
    def _on_messages(self, ev: Event, doc: dict[str, Any]) -> list[Event]:
        etype = doc.get("type")
        if etype == "content_block_delta":
            idx = doc.get("index", 0)
            delta = doc.get("delta") or {}
            for field, escaped in (("text", False), ("partial_json", True), ("thinking", False)):
                if isinstance(delta.get(field), str):
                    delta[field] = self._r((idx, field, delta.get("type")), json_escaped=escaped).feed(delta[field])
            return [self._dump(ev, doc)]
        out: list[Event] = []
        if etype == "content_block_stop":
            idx = doc.get("index", 0)
            for key in [k for k in self._restorers if k[0] == idx]:
                rest = self._flush(key)
                if rest:
                    extra = {"type": "content_block_delta", "index": idx, "delta": {"type": key[2], key[1]: rest}}
                    out.append(Event(data=json.dumps(extra, ensure_ascii=False), event="content_block_delta"))
        out.append(self._dump(ev, self.redactor.restore_json(doc)))
        return out

    def finish(self) -> list[Event]:
        """Release anything still held at the end of the stream."""
        out: list[Event] = []
        for key in list(self._restorers):
            rest = self._flush(key)
            if not rest:
                continue
            if self.protocol == "chat":
                chunk = {
                    **self._last_chunk,
                    "choices": [
                        {
                            "index": key[1],
                            "delta": {key[0]: rest}
                            if key[0] != "tool"
                            else {"tool_calls": [{"index": key[2], "function": {"arguments": rest}}]},
                            "finish_reason": None,
                        }
                    ],
                }
                out.append(Event(data=json.dumps(chunk, ensure_ascii=False)))
            elif self.protocol == "completions":
                chunk = {**self._last_chunk, "choices": [{"index": key[1], "text": rest, "finish_reason": None}]}
                out.append(Event(data=json.dumps(chunk, ensure_ascii=False)))
        return out
