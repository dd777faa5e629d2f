"""Reading a sandbox's output file for ``clawfleet sandbox logs`` without trusting its size or shape.

The file is written by the sandboxed process (a hostile or careless agent): it may be gigabytes long, hold one line
without a newline, or be truncated in place by logrotate's ``copytruncate`` while someone follows it. So the tail is
read backwards from the end in blocks and never more than ``max_bytes``; a followed line is read at most ``max_line``
bytes at a time; and a file that shrank under the reader is read again from its start.
"""

from __future__ import annotations

import os
from typing import BinaryIO

__all__ = ["MAX_LINE", "MAX_TAIL_BYTES", "follow_chunk", "tail_lines"]

MAX_TAIL_BYTES = 4 * 1024 * 1024  # the most a `logs --lines N` request reads, whatever N is
MAX_LINE = 64 * 1024  # longer lines are sent in pieces of this size
_BLOCK = 64 * 1024


def tail_lines(f: BinaryIO, count: int, max_bytes: int = MAX_TAIL_BYTES) -> list[bytes]:
    """The last ``count`` lines of ``f`` (without their newlines), reading at most ``max_bytes`` from the end.

    Leaves ``f`` positioned at the end, where a follower continues. When the limit cuts a line, its tail is the
    first line returned (marked by nothing: the reader asked for more than a bounded read can give)."""
    end = f.seek(0, os.SEEK_END)
    if count <= 0:
        return []
    start = end
    data = b""
    # Enough newlines for `count` lines, plus one to know where the first of them starts.
    while start > 0 and data.count(b"\n") <= count and end - start < max_bytes:
        step = min(_BLOCK, start, max_bytes - (end - start))
        start -= step
        f.seek(start)
        data = f.read(step) + data
    f.seek(end)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline: no empty last line
    return lines[-count:]


def follow_chunk(f: BinaryIO, max_line: int = MAX_LINE) -> bytes | None:
    """The next line (or piece of a long line) written after ``f``'s position, or None when nothing new is there.

    A partial last line (the writer is mid-line) is left for the next call unless it already reached ``max_line``.
    A file truncated below the reader's position (logrotate copytruncate) is followed again from its start."""
    pos = f.tell()
    size = os.fstat(f.fileno()).st_size
    if size < pos:
        f.seek(0)
        pos = 0
    chunk = f.readline(max_line)
    if not chunk:
        return None
    if not chunk.endswith(b"\n") and len(chunk) < max_line:
        f.seek(pos)  # an unfinished line: wait for the rest
        return None
    return chunk.rstrip(b"\n")
