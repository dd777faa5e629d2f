#!/usr/bin/env python3
"""FAKE vLLM OpenAI-compatible server, for tests only (no GPU or model weights exist on the test hosts).

Takes the same command line as `vllm serve MODEL --host H --port P ...`, records it, and answers /health,
/v1/models and /v1/chat/completions like vLLM does, checking `Authorization: Bearer $VLLM_API_KEY` when set.
Standard library only, so it runs inside the bare Debian test containers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = os.environ.get("FAKE_VLLM_ANSWER", "fake vllm answer")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="fake-vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", nargs="+")
    return parser.parse_known_args(argv)


def make_handler(args: argparse.Namespace, api_key: str | None):
    names = args.served_model_name or [args.model]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # keep the journal readable
            sys.stderr.write("fake-vllm: " + fmt % a + "\n")

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                self._json(401, {"error": "Unauthorized"})
                return False
            return True

        def do_GET(self):
            if self.path == "/health":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/v1/models" and self._authorised():
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": n, "object": "model", "owned_by": "vllm", "root": args.model} for n in names],
                    },
                )
            elif self.path != "/v1/models":
                self._json(404, {"error": "not found"})

        def do_POST(self):
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": "not found"})
                return
            if not self._authorised():
                return
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if request.get("stream"):
                self._stream(request.get("model", names[0]))
                return
            self._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", names[0]),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": ANSWER}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
            })  # fmt: skip

        def _stream(self, model: str) -> None:
            # Server-sent events as vLLM streams them (agents such as OpenClaw always stream): a role delta, the
            # answer in two content deltas, a finish chunk, a usage chunk, then [DONE]. Connection: close frames it.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model}  # fmt: skip
            half = len(ANSWER) // 2
            deltas = [{"role": "assistant", "content": ""}, {"content": ANSWER[:half]}, {"content": ANSWER[half:]}]
            chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
            chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 3,
                                                             "total_tokens": 4}})  # fmt: skip
            for chunk in chunks:
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def main(argv: list[str]) -> int:
    args, rest = parse(argv)
    record = os.environ.get("FAKE_VLLM_RECORD")
    if record:
        with open(record, "w", encoding="utf-8") as fh:
            json.dump({"argv": argv, "unparsed": rest}, fh)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args, os.environ.get("VLLM_API_KEY")))
    print(f"fake-vllm: listening on {args.host}:{server.server_address[1]}", file=sys.stderr, flush=True)  # --port 0
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
