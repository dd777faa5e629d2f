"""Find the text to classify in OpenAI and Anthropic request bodies.

Every string a model would read is a *slot* ``(container, key)`` in the parsed
body, so redaction can rewrite it in place. Covered: chat messages (string or
content-part arrays, tool calls and tool results), completions prompts,
Responses API input items and instructions, embeddings input, Anthropic
``system`` and message blocks (text, tool_use input, tool_result, thinking,
plain-text documents). Parts the classifier cannot read (images, audio,
files, token arrays) set ``opaque`` so routing can treat them as
``unscanned_content``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("chat", "completions", "responses", "embeddings", "messages")
OPAQUE_PARTS = frozenset(
    {"image_url", "input_image", "image", "input_audio", "audio", "file", "input_file", "document", "video_url"}
)
SEPARATOR = "\n"


class ExtractError(ValueError):
    """The body does not have the shape the endpoint expects."""


@dataclass
class Extracted:
    slots: list[tuple[Any, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    opaque: bool = False
    _joined: str | None = None
    _starts: list[int] | None = None

    def add(self, container: Any, key: Any) -> None:
        value = container[key]
        if isinstance(value, str) and value:
            self.slots.append((container, key))
            self.texts.append(value)

    @property
    def text(self) -> str:
        """All slot texts joined by newlines: the string the classifier sees."""
        if self._joined is None:
            self._joined = SEPARATOR.join(self.texts)
            starts, pos = [], 0
            for t in self.texts:
                starts.append(pos)
                pos += len(t) + len(SEPARATOR)
            self._starts = starts
        return self._joined

    def segment_starts(self) -> list[int]:
        _ = self.text
        assert self._starts is not None
        return self._starts


def _walk_json(out: Extracted, node: Any) -> None:
    if isinstance(node, dict):
        for k in node:
            if isinstance(node[k], str):
                out.add(node, k)
            else:
                _walk_json(out, node[k])
    elif isinstance(node, list):
        for i in range(len(node)):
            if isinstance(node[i], str):
                out.add(node, i)
            else:
                _walk_json(out, node[i])


def _parts(out: Extracted, content: Any, text_types: frozenset[str]) -> None:
    for i, part in enumerate(content):
        if isinstance(part, str):
            out.add(content, i)
            continue
        if not isinstance(part, dict):
            raise ExtractError("content parts must be objects")
        ptype = part.get("type")
        if ptype in text_types and "text" in part:
            out.add(part, "text")
        elif ptype in OPAQUE_PARTS:
            if ptype == "document" and isinstance(part.get("source"), dict) and part["source"].get("type") == "text":
                out.add(part["source"], "data")
            else:
                out.opaque = True
        elif ptype == "tool_use":
            if isinstance(part.get("input"), str):  # an input sent as a JSON string is read all the same
                out.add(part, "input")
            else:
                _walk_json(out, part.get("input"))
        elif ptype == "tool_result":
            inner = part.get("content")
            if isinstance(inner, str):
                out.add(part, "content")
            elif isinstance(inner, list):
                _parts(out, inner, text_types)
        elif ptype in ("thinking", "redacted_thinking"):
            if "thinking" in part:
                out.add(part, "thinking")
        elif ptype in ("refusal",):
            out.add(part, "refusal")
        elif ptype is None and any(k in part for k in ("image_url", "input_audio", "file_data", "file_id")):
            out.opaque = True  # a media part without a type is still media the provider reads
        else:
            # unknown part types: classify every string they hold rather than skip them
            _walk_json(out, part)


def _content(out: Extracted, holder: dict[str, Any], key: str, text_types: frozenset[str]) -> None:
    value = holder.get(key)
    if isinstance(value, str):
        out.add(holder, key)
    elif isinstance(value, list):
        _parts(out, value, text_types)
    elif value is not None:
        raise ExtractError(f"'{key}' must be a string or an array of content parts")


_CHAT_TEXT = frozenset({"text", "input_text", "output_text"})


def _chat(out: Extracted, body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ExtractError("'messages' must be an array")
    for msg in messages:
        if not isinstance(msg, dict):
            raise ExtractError("each message must be an object")
        _content(out, msg, "content", _CHAT_TEXT)
        calls = msg.get("tool_calls") or ()
        if not isinstance(calls, (list, tuple)):
            raise ExtractError("'tool_calls' must be an array")
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and "arguments" in fn:
                out.add(fn, "arguments")
        fc = msg.get("function_call")
        if isinstance(fc, dict) and "arguments" in fc:
            out.add(fc, "arguments")


def _text_or_texts(out: Extracted, body: dict[str, Any], key: str, *, required: bool) -> None:
    """A field that is a string or an array of strings; array items that are not strings are token ids,
    which the classifier cannot read (the request is then treated as opaque)."""
    value = body.get(key)
    if isinstance(value, str):
        out.add(body, key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.add(value, i)
            else:
                out.opaque = True
    elif value is not None or required:
        raise ExtractError(f"'{key}' must be a string or an array")


def _completions(out: Extracted, body: dict[str, Any]) -> None:
    _text_or_texts(out, body, "prompt", required=False)
    if isinstance(body.get("suffix"), str):
        out.add(body, "suffix")


def _responses(out: Extracted, body: dict[str, Any]) -> None:
    if isinstance(body.get("instructions"), str):
        out.add(body, "instructions")
    inp = body.get("input")
    if isinstance(inp, str):
        out.add(body, "input")
        return
    if inp is None:
        return
    if not isinstance(inp, list):
        raise ExtractError("'input' must be a string or an array of items")
    for item in inp:
        if not isinstance(item, dict):
            raise ExtractError("each input item must be an object")
        itype = item.get("type", "message")
        if itype == "message" or "role" in item:
            _content(out, item, "content", _CHAT_TEXT)
        elif itype in ("function_call", "custom_tool_call"):
            for key in ("arguments", "input"):
                if key in item:
                    out.add(item, key)
        elif itype in ("function_call_output", "custom_tool_call_output"):
            if isinstance(item.get("output"), list):
                _parts(out, item["output"], _CHAT_TEXT)
            elif "output" in item:
                out.add(item, "output")
        elif itype == "item_reference":
            continue
        else:
            _walk_json(out, {k: v for k, v in item.items() if k not in ("type", "id", "call_id", "status")})


def _embeddings(out: Extracted, body: dict[str, Any]) -> None:
    _text_or_texts(out, body, "input", required=True)


_ANTHROPIC_TEXT = frozenset({"text"})


def _messages(out: Extracted, body: dict[str, Any]) -> None:
    system = body.get("system")
    if isinstance(system, str):
        out.add(body, "system")
    elif isinstance(system, list):
        _parts(out, system, _ANTHROPIC_TEXT)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ExtractError("'messages' must be an array")
    for msg in messages:
        if not isinstance(msg, dict):
            raise ExtractError("each message must be an object")
        _content(out, msg, "content", _ANTHROPIC_TEXT)


_EXTRACTORS = {
    "chat": _chat,
    "completions": _completions,
    "responses": _responses,
    "embeddings": _embeddings,
    "messages": _messages,
}


def extract(kind: str, body: Any) -> Extracted:
    """Collect the readable text slots of a request body of the given endpoint kind."""
    if not isinstance(body, dict):
        raise ExtractError("the request body must be a JSON object")
    out = Extracted()
    _EXTRACTORS[kind](out, body)
    return out


def guess_kind(body: Any) -> str:
    """For `router classify` on a whole body: which endpoint it looks like (both chat shapes read the same)."""
    if not isinstance(body, dict):
        raise ExtractError("the request body must be a JSON object")
    if "messages" in body:
        return "messages" if "system" in body else "chat"
    if "prompt" in body:
        return "completions"
    inp = body.get("input")
    if isinstance(inp, list) and all(not isinstance(x, dict) for x in inp):
        return "embeddings"
    if "input" in body or "instructions" in body:
        return "responses"
    raise ExtractError("cannot tell which API this body is for (no messages, prompt or input)")
