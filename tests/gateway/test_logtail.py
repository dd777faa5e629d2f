"""`clawfleet sandbox logs` reads a file the sandboxed agent writes: its size and shape are the agent's choice."""

from __future__ import annotations

import io
import os
from pathlib import Path

from clawfleet.supervisor.logtail import follow_chunk, tail_lines


class CountingFile(io.FileIO):
    """A real file that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, b):  # type: ignore[no-untyped-def]
        n = super().readinto(b)
        self.bytes_read += n or 0
        return n


def test_tail_gives_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100_000)))
    with CountingFile(log, "rb") as f:
        assert tail_lines(f, 3) == [b"line 99997", b"line 99998", b"line 99999"]
        assert f.tell() == log.stat().st_size  # a follower continues at the end
        assert f.bytes_read < 100_000  # one block from the end, not the whole 1.3 MB file
    with open(log, "rb") as f:
        assert tail_lines(f, 0) == []
        assert tail_lines(f, 200_000)[0] == b"line 0"  # fewer lines than asked: all of them


def test_tail_of_a_huge_file_reads_a_bounded_amount(tmp_path: Path) -> None:
    # Attack: the agent writes 48 MB without a newline, then asks the operator to look at its logs.
    log = tmp_path / "b.out"
    with open(log, "wb") as f:
        f.write(b"start\n")
        f.write(b"x" * (48 * 1024 * 1024))
    with CountingFile(log, "rb") as f:
        lines = tail_lines(f, 10, max_bytes=1024 * 1024)
        assert f.bytes_read <= 1024 * 1024
    assert len(lines) == 1 and len(lines[0]) == 1024 * 1024  # the end of the long line, cut at the limit


def test_follow_holds_an_unfinished_line_and_splits_a_long_one(tmp_path: Path) -> None:
    log = tmp_path / "c.out"
    log.write_bytes(b"done\nhalf")
    with open(log, "rb") as f:
        assert follow_chunk(f) == b"done"
        assert follow_chunk(f) is None  # "half" has no newline yet
        with open(log, "ab") as w:
            w.write(b" of it\n" + b"y" * 100 + b"\n")
        assert follow_chunk(f) == b"half of it"
        assert follow_chunk(f, max_line=40) == b"y" * 40
        assert follow_chunk(f, max_line=40) == b"y" * 40
        assert follow_chunk(f, max_line=40) == b"y" * 20
        assert follow_chunk(f) is None


def test_follow_survives_copytruncate(tmp_path: Path) -> None:
    # logrotate's copytruncate empties the file under the reader: new lines must still be shown.
    log = tmp_path / "d.out"
    log.write_bytes(b"old 1\nold 2\n")
    with open(log, "rb") as f:
        tail_lines(f, 10)
        os.truncate(log, 0)
        with open(log, "ab") as w:
            w.write(b"new\n")
        assert follow_chunk(f) == b"new"
