"""One way to replace a file the runtime writes: all or nothing, also across a crash.

The data goes to a new temp file in the same directory (``O_EXCL | O_NOFOLLOW``: an attacker's symlink or an
existing file is never written through), is fsynced, renamed over the target (rename replaces a symlink itself,
never its target), and the directory is fsynced so that the rename survives a power loss. The temp name starts
with '.', so a ``*.yaml`` or ``*.json`` glob never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600, *, uid: int = -1,
                 gid: int = -1) -> None:  # fmt: skip
    """Replace ``path`` with ``data`` (str is written as UTF-8), permissions ``mode``; ``uid``/``gid`` other than
    -1 set the owner (a caller that is not root may lack the right to: then the owner is left as it is)."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")  # O_EXCL | O_NOFOLLOW, 0600
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        if uid != -1 or gid != -1:
            try:
                os.fchown(fd, uid, gid)
            except PermissionError:
                if os.geteuid() == 0:
                    raise
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
