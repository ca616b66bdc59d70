"""Which files of a recording the server may hand out.

Only regular files directly inside the recording's folder count. A symlink
planted there (by a misconfigured mount, a restored backup, another process)
must never turn the download server into a reader of arbitrary files, so links
are refused rather than followed, and ZIP members are opened with O_NOFOLLOW so
a link swapped in after the check is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_servable", "servable"]


def servable(directory: Path, name: str) -> Path | None:
    """``directory / name`` when it is a regular file (not a symlink) directly
    inside ``directory``; otherwise None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return None
    path = directory / name
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return path if stat.S_ISREG(st.st_mode) else None


def open_servable(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open ``path`` for reading without following a symlink at its last step;
    returns the file and its stat. Raises OSError when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path.name}: not a regular file")
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise
