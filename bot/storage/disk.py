"""Free disk space, for refusing or stopping recordings before the disk fills."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["free_disk_mb", "has_free_space"]


def free_disk_mb(path: Path) -> int:
    """Free megabytes (MiB) on the file system holding ``path``, or holding its
    nearest existing parent when ``path`` does not exist yet."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free // (1024 * 1024)


def has_free_space(path: Path, min_free_mb: int) -> bool:
    """True when at least ``min_free_mb`` MiB are free where ``path`` lives."""
    return free_disk_mb(path) >= min_free_mb
