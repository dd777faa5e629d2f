"""Usage counters that survive restarts: one sqlite file in the router's state dir (WAL journal).

Rows are (scope, window) -> requests, tokens, cost: ``scope`` is ``sandbox:NAME`` or ``host``; ``window``
is ``m<minute number>``, ``d<YYYY-MM-DD>`` or ``M<YYYY-MM>`` (UTC). Every update is one small transaction;
with WAL and ``synchronous=NORMAL`` a commit does not wait for the disk, and a crash loses at most the last
few updates, never the file.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

Counts = list[float]  # [requests, tokens, cost_usd]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    scope TEXT NOT NULL,
    win TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, win)
)
"""
_UPSERT = """
INSERT INTO usage (scope, win, requests, tokens, cost) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (scope, win) DO UPDATE SET
    requests = requests + excluded.requests, tokens = tokens + excluded.tokens, cost = cost + excluded.cost
"""


class UsageStore:
    """In-memory counters mirrored to sqlite (``path`` None: memory only)."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._mem: dict[tuple[str, str], Counts] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            for scope, win, req, tok, cost in self._db.execute("SELECT scope, win, requests, tokens, cost FROM usage"):
                self._mem[(scope, win)] = [req, tok, cost]

    def get(self, scope: str, window: str) -> Counts:
        return self._mem.get((scope, window), [0, 0, 0.0])

    def add(self, rows: list[tuple[str, str]], requests: int = 0, tokens: int = 0, cost: float = 0.0) -> None:
        with self._lock:
            for key in rows:
                c = self._mem.setdefault(key, [0, 0, 0.0])
                c[0] += requests
                c[1] += tokens
                c[2] += cost
            if self._db is not None:
                self._db.execute("BEGIN")
                self._db.executemany(_UPSERT, [(s, w, requests, tokens, cost) for s, w in rows])
                self._db.execute("COMMIT")

    def prune(self, keep: set[str]) -> None:
        """Forget minute windows other than ``keep`` (day and month rows stay: they are the spending record)."""
        with self._lock:
            old = [k for k in self._mem if k[1].startswith("m") and k[1] not in keep]
            for k in old:
                del self._mem[k]
            if self._db is not None and old:
                self._db.executemany("DELETE FROM usage WHERE scope = ? AND win = ?", old)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
