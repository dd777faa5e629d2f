"""Stand-in upstream model servers (FAKES) for tests and benchmarks: OpenAI-compatible and Anthropic.

They run as real HTTP servers on 127.0.0.1 ephemeral ports and record every
request they receive, so tests can assert what reached which upstream.
By default the reply echoes the last user text, so placeholders sent by the
router come back and their restoration can be checked; streams are cut into
small chunks so placeholders get split across SSE events.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeState:
    name: str
    received: list[Received] = field(default_factory=list)
    reply: str | None = None  # fixed reply text; None = echo the last user text
    chunk_size: int = 3
    fail_status: int | None = None
    tool_call: bool = False  # answer with a tool call whose arguments echo the text
    fixed_chunks: int | None = None  # benchmark mode: this many fixed chunks, no echo
    chunk_delay: float = 0.0  # seconds between streamed chunks
    reset_after: int | None = None  # streams: drop the connection after this many text chunks
    fail_first: int = 0  # answer this many requests with 503 first (transient failure)
    probes: int = 0  # health-check GETs of /v1/models

    @property
    def bytes_received(self) -> int:
        return sum(len(r.body) for r in self.received)


def _last_user_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        for msg in reversed(body["messages"]):
            if msg.get("role") in ("user", "tool"):
                c = msg.get("content")
                if isinstance(c, str):
                    return c
                if isinstance(c, list):
                    return " ".join(
                        p.get("text", "") if p.get("type") == "text" else str(p.get("content", ""))
                        for p in c
                        if isinstance(p, dict)
                    )
        return ""
    for key in ("prompt", "input"):
        v = body.get(key)
        if isinstance(v, str):
            return v
        if isinstance(v, list) and v:
            last = v[-1]
            if isinstance(last, str):
                return last
            if isinstance(last, dict):
                c = last.get("content")
                if isinstance(c, str):
                    return c
                if isinstance(c, list):
                    return " ".join(str(p.get("text") or "") for p in c if isinstance(p, dict))
    return ""


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def make_openai_app(state: FakeState) -> Starlette:
    async def record(request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        state.received.append(Received(request.url.path, dict(request.headers), raw))
        if state.fail_status:
            return JSONResponse({"error": {"message": "fake failure", "type": "server_error"}}, state.fail_status)
        if state.fail_first > 0:
            state.fail_first -= 1
            return JSONResponse({"error": {"message": "fake transient failure", "type": "server_error"}}, 503)
        return json.loads(raw)

    async def models(request: Request) -> Response:
        state.probes += 1
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def reply_text(body: dict[str, Any]) -> str:
        if state.reply is not None:
            return state.reply
        return "You said: " + _last_user_text(body)

    async def chat(request: Request) -> Response:
        body = await record(request)
        if isinstance(body, Response):
            return body
        text = reply_text(body)
        created = int(time.time())
        if not body.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            finish = "stop"
            if state.tool_call and body.get("tools"):
                name = body["tools"][0]["function"]["name"]
                msg = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps({"echo": text})},
                        }
                    ],
                }
                finish = "tool_calls"
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
            )

        async def gen():
            base = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
            }
            yield _sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
            if state.fixed_chunks is not None:
                pieces = ["tok "] * state.fixed_chunks
            else:
                pieces = _chunks(text, state.chunk_size)
            if state.tool_call and body.get("tools"):
                name = body["tools"][0]["function"]["name"]
                args = json.dumps({"echo": text})
                yield _sse(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "id": "call_1",
                                            "type": "function",
                                            "function": {"name": name, "arguments": ""},
                                        }
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ],
                    }
                )
                for piece in _chunks(args, state.chunk_size):
                    yield _sse(
                        {
                            **base,
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                                    "finish_reason": None,
                                }
                            ],
                        }
                    )
                finish = "tool_calls"
            else:
                for i, piece in enumerate(pieces):
                    if state.chunk_delay:
                        await asyncio.sleep(state.chunk_delay)
                    if state.reset_after is not None and i >= state.reset_after:
                        raise ConnectionResetError("fake upstream: connection dropped mid-stream")
                    yield _sse({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                finish = "stop"
            yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                yield _sse(
                    {**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
                )
            yield _sse("[DONE]")

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def completions(request: Request) -> Response:
        body = await record(request)
        if isinstance(body, Response):
            return body
        text = reply_text(body)
        base = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        async def gen():
            for piece in _chunks(text, state.chunk_size):
                yield _sse({**base, "choices": [{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]})
            yield _sse({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
            yield _sse("[DONE]")

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def responses(request: Request) -> Response:
        body = await record(request)
        if isinstance(body, Response):
            return body
        text = reply_text(body)
        item = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        resp = {
            "id": "resp_fake",
            "object": "response",
            "created_at": int(time.time()),
            "model": body["model"],
            "status": "completed",
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 1,
                "output_tokens": 1,
                "total_tokens": 2,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
        if not body.get("stream"):
            return JSONResponse(resp)

        async def gen():
            seq = 0

            def ev(d: dict[str, Any]) -> bytes:
                nonlocal seq
                seq += 1
                return _sse({**d, "sequence_number": seq}, d["type"])

            yield ev({"type": "response.created", "response": {**resp, "status": "in_progress", "output": []}})
            yield ev(
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": {**item, "status": "in_progress", "content": []},
                }
            )
            yield ev(
                {
                    "type": "response.content_part.added",
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                }
            )
            for piece in _chunks(text, state.chunk_size):
                yield ev(
                    {
                        "type": "response.output_text.delta",
                        "item_id": "msg_fake",
                        "output_index": 0,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    }
                )
            yield ev(
                {
                    "type": "response.output_text.done",
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            )
            yield ev(
                {
                    "type": "response.content_part.done",
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []},
                }
            )
            yield ev({"type": "response.output_item.done", "output_index": 0, "item": item})
            yield ev({"type": "response.completed", "response": resp})

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body = await record(request)
        if isinstance(body, Response):
            return body
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse(
            {
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


def make_anthropic_app(state: FakeState) -> Starlette:
    async def messages(request: Request) -> Response:
        raw = await request.body()
        state.received.append(Received(request.url.path, dict(request.headers), raw))
        if state.fail_status:
            return JSONResponse(
                {"type": "error", "error": {"type": "api_error", "message": "fake failure"}}, state.fail_status
            )
        body = json.loads(raw)
        text = state.reply if state.reply is not None else "You said: " + _last_user_text(body)
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
        if not body.get("stream"):
            return JSONResponse(message)

        async def gen():
            yield _sse(
                {"type": "message_start", "message": {**message, "content": [], "stop_reason": None}}, "message_start"
            )
            yield _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
            pieces = (
                ["tok "] * state.fixed_chunks if state.fixed_chunks is not None else _chunks(text, state.chunk_size)
            )
            for i, piece in enumerate(pieces):
                if state.reset_after is not None and i >= state.reset_after:
                    raise ConnectionResetError("fake upstream: connection dropped mid-stream")
                yield _sse(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                    "content_block_delta",
                )
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
                "message_delta",
            )
            yield _sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


class ServerThread:
    """Runs an ASGI app under uvicorn on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, app: Any, *, port: int = 0) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1)
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self._sock]))

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


def free_port() -> int:
    """A port nothing listens on (for 'route down' tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    """Run one fake as its own process (used by benchmarks/bench_router.py)."""
    import argparse

    ap = argparse.ArgumentParser(description="stand-in upstream model server (FAKE) for benchmarks")
    ap.add_argument("--kind", choices=["openai", "anthropic"], default="openai")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--reply", default="ok")
    ap.add_argument("--fixed-chunks", type=int, default=20)
    args = ap.parse_args()
    state = FakeState(args.kind, reply=args.reply, fixed_chunks=args.fixed_chunks)
    state.received = _Discard()  # benchmarks: do not keep every request body in memory
    app = make_openai_app(state) if args.kind == "openai" else make_anthropic_app(state)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


class _Discard(list):
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
