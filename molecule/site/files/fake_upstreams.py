#!/usr/bin/env python3
"""FAKE model providers and web origin for the site scenario: tests only, nothing real is reached.

    fake_upstreams.py NAME PORT RECORD_FILE

Listens on 127.0.0.1:PORT and answers like an OpenAI-compatible server (POST /v1/chat/completions,
/v1/completions, /v1/embeddings; GET /v1/models, /health) and like a web origin (any other GET). Every request is
appended to RECORD_FILE as one JSON line (method, path, Authorization header, body text) so the tests can see which
stand-in received which prompt and with which key. Answers say "answered by NAME". Standard library only.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, PORT, RECORD = sys.argv[1], int(sys.argv[2]), sys.argv[3]
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write(f"fake-{NAME}: " + fmt % args + "\n")

    def _record(self, body: bytes) -> None:
        entry = {"name": NAME, "method": self.command, "path": self.path,
                 "authorization": self.headers.get("Authorization"), "host": self.headers.get("Host"),
                 "body": body.decode("utf-8", "replace")}  # fmt: skip
        with LOCK, open(RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _send(self, status: int, payload: dict | str) -> None:
        data = (json.dumps(payload) if isinstance(payload, dict) else payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(payload, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._record(b"")
        if self.path.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": f"fake-{NAME}-model", "object": "model"}]})
        elif self.path == "/health":
            self._send(200, "")
        else:
            self._send(200, f"hello from fake {NAME}: {self.path}\n")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record(body)
        try:
            model = json.loads(body).get("model", "?")
        except ValueError:
            model = "?"
        if self.path.endswith("/embeddings"):
            self._send(200, {"object": "list", "model": model, "data": [{"object": "embedding", "index": 0,
                                                                        "embedding": [0.0, 1.0]}]})  # fmt: skip
            return
        self._send(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answered by {NAME}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
        })  # fmt: skip


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
