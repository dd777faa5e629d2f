"""Anthropic Messages <-> OpenAI Chat Completions, for routes that cross protocol families.

Supported: an Anthropic ``/v1/messages`` request (streaming or not) sent to an
OpenAI-compatible provider (vLLM, Ollama, NVIDIA, Gemini, OpenAI). Translated:
system prompt, text, base64/URL images, tool definitions, tool_choice, tool_use
/ tool_result turns, stop sequences, sampling parameters, max_tokens, usage and
stop reasons. Not translated: thinking blocks (dropped), citations, cache
control hints (dropped), PDF documents (plain-text documents are kept as text).
The reverse direction (an OpenAI request to an Anthropic provider) is not
supported; such a route is answered with a clear 400.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from clawfleet.router.sse import Event

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    src = block.get("source") or {}
    if src.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{src.get('media_type')};base64,{src.get('data')}"}}
    if src.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": src.get("url")}}
    return None


def messages_to_chat(body: dict[str, Any], model: str) -> dict[str, Any]:
    out_msgs: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out_msgs.append({"role": "system", "content": _text_of(system)})
    for msg in body.get("messages", []):
        role = msg.get("role")
        content = msg.get("content")
        if isinstance(content, str):
            out_msgs.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        tool_calls: list[dict[str, Any]] = []
        for block in content or []:
            if isinstance(block, str):
                block = {"type": "text", "text": block}  # lenient like the upstream APIs
            if not isinstance(block, dict):
                raise ValueError("content blocks must be objects")
            btype = block.get("type")
            if btype == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif btype == "image":
                img = _image_part(block)
                if img:
                    parts.append(img)
            elif btype == "document" and (block.get("source") or {}).get("type") == "text":
                parts.append({"type": "text", "text": block["source"].get("data", "")})
            elif btype == "tool_use":
                tool_calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input", {}))},
                    }
                )
            elif btype == "tool_result":
                result = block.get("content")
                text = _text_of(result) if not isinstance(result, str) else result
                if block.get("is_error"):
                    text = f"[tool error] {text}"
                out_msgs.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        if role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": "".join(p.get("text", "") for p in parts) or None}
            if tool_calls:
                entry["tool_calls"] = tool_calls
            if entry["content"] is not None or tool_calls:
                out_msgs.append(entry)
        elif parts:
            simple = all(p["type"] == "text" for p in parts)
            out_msgs.append({"role": role, "content": "\n".join(p["text"] for p in parts) if simple else parts})
    req: dict[str, Any] = {"model": model, "messages": out_msgs}
    if "max_tokens" in body:
        req["max_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if key in body:
            req[key] = body[key]
    if body.get("stop_sequences"):
        req["stop"] = body["stop_sequences"]
    if body.get("tools"):
        req["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema", {"type": "object"}),
                },
            }
            for t in body["tools"]
            if t.get("name")
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        ctype = choice.get("type")
        if ctype == "any":
            req["tool_choice"] = "required"
        elif ctype == "tool":
            req["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif ctype in ("auto", "none"):
            req["tool_choice"] = ctype
    if body.get("stream"):
        req["stream"] = True
        req["stream_options"] = {"include_usage": True}
    return req


def chat_to_message(resp: dict[str, Any], model: str) -> dict[str, Any]:
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            args = {"_raw": fn.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id") or _tool_id(), "name": fn.get("name"), "input": args})
    usage = resp.get("usage") or {}
    return {
        "id": "msg_" + str(resp.get("id") or uuid.uuid4().hex),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)},
    }


def error_to_anthropic(status: int, body: bytes) -> dict[str, Any]:
    try:
        err = json.loads(body).get("error")
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        message = body[:500].decode("utf-8", "replace")
    etype = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message or f"upstream status {status}"}}


def _tool_id() -> str:
    return "toolu_" + uuid.uuid4().hex[:24]


def _ev(name: str, data: dict[str, Any]) -> Event:
    return Event(data=json.dumps(data, separators=(",", ":")), event=name)


class ChatToMessagesStream:
    """Turns OpenAI chat.completion.chunk events into Anthropic message stream events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block: int = -1
        self.block_kind: str | None = None  # "text" | "tool"
        self.tool_blocks: dict[int, int] = {}  # openai tool index -> anthropic block index
        self.stop_reason: str | None = None
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.finished = False

    def _start(self, chunk: dict[str, Any]) -> list[Event]:
        self.started = True
        message = {
            "id": "msg_" + str(chunk.get("id") or uuid.uuid4().hex),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [_ev("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[Event]:
        if self.block_kind is None:
            return []
        self.block_kind = None
        return [_ev("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def feed(self, data: str) -> list[Event]:
        if data.strip() == "[DONE]":
            return self.finish()
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            return []
        out: list[Event] = []
        if not self.started:
            out += self._start(chunk)
        if chunk.get("usage"):
            self.usage = {
                "input_tokens": chunk["usage"].get("prompt_tokens", 0),
                "output_tokens": chunk["usage"].get("completion_tokens", 0),
            }
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.block_kind != "text":
                    out += self._close_block()
                    self.block += 1
                    self.block_kind = "text"
                    out.append(
                        _ev(
                            "content_block_start",
                            {
                                "type": "content_block_start",
                                "index": self.block,
                                "content_block": {"type": "text", "text": ""},
                            },
                        )
                    )
                out.append(
                    _ev(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self.block,
                            "delta": {"type": "text_delta", "text": text},
                        },
                    )
                )
            for call in delta.get("tool_calls") or []:
                tidx = call.get("index", 0)
                fn = call.get("function") or {}
                if tidx not in self.tool_blocks:
                    out += self._close_block()
                    self.block += 1
                    self.block_kind = "tool"
                    self.tool_blocks[tidx] = self.block
                    block = {
                        "type": "tool_use",
                        "id": call.get("id") or _tool_id(),
                        "name": fn.get("name"),
                        "input": {},
                    }
                    out.append(
                        _ev(
                            "content_block_start",
                            {"type": "content_block_start", "index": self.block, "content_block": block},
                        )
                    )
                if fn.get("arguments"):
                    out.append(
                        _ev(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": self.tool_blocks[tidx],
                                "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]},
                            },
                        )
                    )
            if choice.get("finish_reason"):
                self.stop_reason = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def finish(self) -> list[Event]:
        if self.finished:
            return []
        self.finished = True
        out: list[Event] = [] if self.started else self._start({})
        out += self._close_block()
        out.append(
            _ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": self.usage["output_tokens"]},
                },
            )
        )
        out.append(_ev("message_stop", {"type": "message_stop"}))
        return out


def now() -> int:
    return int(time.time())
