"""Local copies of a stored recording's objects, for the parts of the download
server that need files: the page's small files (manifest, activity, notes) and,
for encoded formats, ZIPs and the mixdown, the WAV tracks they are made from.

Each copy is written under a temporary name and renamed into place, so a
reader never sees half an object; the manifest comes last, as in the upload,
so its copy means the small files before it are there. Blocking: run in a thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.objects import ObjectStore

__all__ = ["copy_object", "copy_small_files"]

_log = logging.getLogger(__name__)


def copy_object(objects: ObjectStore, name: str, target: Path) -> bool:
    """Copy the object ``name`` to ``target`` (unless a copy of the same size is
    there); False when the store has no such object. Raises
    :class:`bot.objects.ObjectStoreError` when the store fails."""
    info = objects.stat(name)
    if info is None:
        return False
    try:
        if target.stat().st_size == info.size:
            return True
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    try:
        with open(partial, "wb") as out:
            if info.size:
                for chunk in objects.open_range(name, 0, info.size - 1, if_match=info.etag).chunks():
                    out.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _log.debug("copied %s (%d bytes) from the object store", name, info.size)
    return True


def copy_small_files(objects: ObjectStore, prefix: str, cache: Path, names: tuple[str, ...], last: str) -> bool:
    """Copy the objects ``prefix + name`` for each of ``names`` there is, then
    ``prefix + last`` (the manifest), into ``cache``, unless ``last`` is there
    already. False when the store has no ``last``."""
    if (cache / last).is_file():
        return True
    for name in names:
        copy_object(objects, prefix + name, cache / name)
    return copy_object(objects, prefix + last, cache / last)
