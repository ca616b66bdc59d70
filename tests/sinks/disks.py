"""Test helper: a small real file system, so a write fails with ENOSPC as on a full disk."""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def small_tmpfs(path: pathlib.Path, size: str) -> Iterator[pathlib.Path]:
    """A tmpfs of ``size`` mounted on ``path`` (made here); skips the test when not root."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
