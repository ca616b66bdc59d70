"""Test helper: a small real file system, so a write fails with ENOSPC as on a full disk."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["tmpfs"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (made if missing). The tests run as root,
    as CI does; anywhere else this fails rather than skip. A bot process writing there
    must have exited before the file system goes away."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"these tests mount a tmpfs and need root: {mounted.stderr.strip()}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
