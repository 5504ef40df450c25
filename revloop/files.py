"""Files the project writes and reads back: private atomic writes, values that follow a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """A value read from a file, read again when the file changes. The stores file is replaced
    atomically on every change (`revloop stores`, later a connector's OAuth callback), so a
    running service that calls :meth:`refresh` now and then serves a new store or a rotated key
    without a restart."""

    def __init__(self, path: Path, load: Callable[[Path], T]) -> None:
        self.path = Path(path)
        self._load = load
        self._stamp = file_stamp(self.path)
        self.value = load(self.path)

    def refresh(self) -> bool:
        """Read the file again if it changed since the last attempt; True if it was read. When
        it fails to load, the last good value stays and the error is raised, once per change of
        the file."""
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.value = self._load(self.path)
        return True


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size): an atomic replace always changes the inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 in the target directory, so the rename is atomic and the
    # file is never readable by others, not even briefly.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
