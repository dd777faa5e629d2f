"""The policy ledger: an append-only, hash-chained JSON-lines audit trail of policy changes on one host.

One record per ``clawfleet policy apply`` that wrote something (applied, rolled back, failed)::

    {"time": "2026-11-26T05:20:01.123456Z", "host": "web-1", "sandbox": "coder", "digest": "sha256:...",
     "previous_digest": "sha256:...", "source_commit": "3f2a...", "operator": "alice", "result": "applied",
     "detail": "", "enforce_latency_s": 0.14, "prev_hash": "sha256:..."}

``prev_hash`` is the SHA-256 of the previous line's bytes (without its newline; ``null`` on the first record),
so editing, inserting or deleting a record breaks the chain at the next line. The newest line has no
successor: ``PATH.head`` (rewritten atomically after each append) holds the count and the hash of the last
line, so truncating or editing the end is detected as well, unless the head file is rewritten too (anyone
with root on the host can do that: ship the ledger off the host, or compare heads from the controller, to
rule it out). The file is opened ``O_APPEND | O_CREAT | O_NOFOLLOW``, mode 0640; a record is one ``write()``
followed by ``fsync``, under an exclusive ``flock`` so that concurrent appends keep the chain linear.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import grp
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from clawfleet import paths
from clawfleet.atomicfile import write_atomic

__all__ = ["DEFAULT_LEDGER", "ChainBreak", "append", "head_path", "last_records", "line_hash", "read_records", "verify"]

DEFAULT_LEDGER = paths.POLICY_LEDGER
FIELDS = ("time", "host", "sandbox", "digest", "previous_digest", "source_commit", "operator", "result", "detail",
          "enforce_latency_s")  # fmt: skip


def line_hash(line: bytes) -> str:
    return "sha256:" + hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def head_path(path: str) -> str:
    return path + ".head"


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _last_line(fd: int) -> tuple[bytes | None, bool]:
    """(last line without newline, whether the file ends with a newline); (None, True) for an empty file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, True
    chunk = 4096
    buf = b""
    pos = size
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        body = buf[:-1] if buf.endswith(b"\n") else buf
        if b"\n" in body or pos == 0:
            return body.rpartition(b"\n")[2], buf.endswith(b"\n")
        chunk *= 2
    return buf, buf.endswith(b"\n")  # pragma: no cover


def _count_lines(fd: int) -> int:
    count, pos = 0, 0
    while True:
        block = os.pread(fd, 1 << 20, pos)
        if not block:
            return count
        count += block.count(b"\n")
        pos += len(block)


def _write_head(path: str, count: int, last_hash: str, gid: int) -> None:
    head = (json.dumps({"records": count, "last_hash": last_hash}) + "\n").encode()
    write_atomic(head_path(path), head, 0o640, uid=0 if os.geteuid() == 0 else -1, gid=gid)


def _group_id(group: str | None) -> int:
    if not group:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return -1


def append(path: str, record: dict[str, Any], *, group: str | None = None) -> dict[str, Any]:
    """Append ``record`` (``time`` filled in if missing, ``prev_hash`` set); return what was written."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o750, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        gid = _group_id(group)
        st = os.fstat(fd)
        if st.st_size == 0:
            os.fchmod(fd, 0o640)
            if gid != -1 and st.st_gid != gid:
                with contextlib.suppress(OSError):
                    os.fchown(fd, -1, gid)
        last, newline_ended = _last_line(fd)  # pread: O_APPEND only affects writes
        count = _count_lines(fd)
        out = {k: record.get(k) for k in FIELDS}
        out.update({k: v for k, v in record.items() if k not in out})
        out["time"] = out.get("time") or _utc_now()
        out["prev_hash"] = None if last is None else line_hash(last)
        line = json.dumps(out, sort_keys=False, separators=(",", ":")).encode() + b"\n"
        data = line if newline_ended else b"\n" + line  # a torn last line stays a (broken) line of its own
        os.write(fd, data)
        os.fsync(fd)
        _write_head(path, count + (1 if newline_ended else 2), line_hash(line), gid)
        return out
    finally:
        os.close(fd)  # releases the lock


def read_records(path: str) -> Iterator[tuple[int, dict[str, Any] | None, bytes]]:
    """(line number from 1, record or None when the line is not a JSON object, raw line) for each line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            yield number, record if isinstance(record, dict) else None, raw


@dataclass(frozen=True)
class ChainBreak:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def verify(path: str) -> tuple[int, list[ChainBreak]]:
    """Check every link of the chain and the head file; (number of records, breaks)."""
    breaks: list[ChainBreak] = []
    previous: bytes | None = None
    count = 0
    for number, record, raw in read_records(path):
        count = number
        if not raw.endswith(b"\n"):
            breaks.append(ChainBreak(number, "torn last line (no newline)"))
        if record is None:
            breaks.append(ChainBreak(number, "not a JSON object"))
        else:
            expected = None if previous is None else line_hash(previous)
            if record.get("prev_hash") != expected:
                what = "the first record has a prev_hash" if previous is None else "prev_hash does not match line"
                suffix = "" if previous is None else f" {number - 1} (edited, inserted or deleted record)"
                breaks.append(ChainBreak(number, what + suffix))
        previous = raw
    try:
        with open(head_path(path), encoding="utf-8") as f:
            head = json.load(f)
    except FileNotFoundError:
        head = None
    except ValueError:
        breaks.append(ChainBreak(count, f"{head_path(path)} is not valid JSON"))
        head = None
    if isinstance(head, dict):
        if head.get("records") != count:
            breaks.append(ChainBreak(count, f"head file records {head.get('records')} lines, the ledger has {count} "
                                            "(truncated or appended outside clawfleet)"))  # fmt: skip
        elif previous is not None and head.get("last_hash") != line_hash(previous):
            breaks.append(ChainBreak(count, "the last record does not match the head file (edited)"))
    return count, breaks


def last_records(path: str) -> dict[str, dict[str, Any]]:
    """The newest record per sandbox (missing ledger: empty)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        for _n, record, _raw in read_records(path):
            if record is not None and isinstance(record.get("sandbox"), str):
                out[record["sandbox"]] = record
    except FileNotFoundError:
        pass
    return out
