"""Private staging for ``clawfleet policy apply -``: the policy arrives on stdin (one remote command per host and
sandbox, no upload step) and is kept, while the apply runs, in a directory of this run's own.

``DIR`` (the shared staging directory) is made root-only (0700) when this runs as root, and must not be a symlink
or belong to another user: a directory an unprivileged user made in advance could otherwise be read or swapped.
Each run gets ``DIR/run-XXXXXXXX`` (``mkdtemp``: 0700, a fresh name), so two applies that overlap on a host never
see each other's file; the run directory is removed whatever happens (refusal, rollback, exception, signal that
unwinds the stack)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator

from .errors import PolicyError, Problem
from .yamlio import MAX_BYTES

__all__ = ["read_stdin", "staged"]


def read_stdin(label: str) -> bytes:
    """All of stdin, at most the loader's MAX_BYTES: a larger input is refused before it is written anywhere."""
    data = sys.stdin.buffer.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise PolicyError([Problem(label, None, None, "", f"more than {MAX_BYTES} bytes on stdin (the size limit)")])
    return data


def _own_directory(path: str) -> None:
    """``path`` exists as a real directory, owned by us, mode 0700 (created so when missing)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"staging directory {path} is not a directory (a symlink or a file is refused)")
    if st.st_uid != os.geteuid():
        raise OSError(f"staging directory {path} belongs to uid {st.st_uid}, not to this user: refused")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


@contextlib.contextmanager
def staged(directory: str, name: str, data: bytes) -> Iterator[str]:
    """Write ``data`` to ``directory/run-*/NAME.yaml`` (0600) for the duration of the block; yields the path."""
    _own_directory(directory)
    run_dir = tempfile.mkdtemp(prefix="run-", dir=directory)
    try:
        path = os.path.join(run_dir, f"{name}.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
