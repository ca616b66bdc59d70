"""One bot process per recordings folder: an exclusive ``flock`` on ``RECORDINGS_DIR/.lock``
held for the life of the process.

The kernel lets go of it when the process ends however it ends (kill -9 too), so a
restart finds it free at once; while it is held, another process on the same folder
would recover, resume and name recordings the live one is writing. The lock file
says which process holds it, for the message that refuses the next one.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

__all__ = ["FolderInUse", "FolderLock", "LOCK_NAME"]

#: The lock's file in the recordings folder.
LOCK_NAME = ".lock"


class FolderInUse(Exception):
    """Another live process holds the folder; ``holder`` says which (``host h, pid 1``)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class FolderLock:
    """The held lock on one recordings folder; :meth:`release` (or the process's end) frees it."""

    def __init__(self, directory: Path) -> None:
        """Take the lock on ``directory``; raises :class:`FolderInUse` when a live process has it."""
        path = Path(directory) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "host and pid unknown"
            os.close(fd)
            raise FolderInUse(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let go of the folder (once; later calls do nothing)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
