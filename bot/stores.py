"""The stores a process keeps recordings in, made from its settings in one place.

The bot, ``sync-commands`` and the download front all open their recording
index and (with ``STORAGE_URL``) their object store here, and the start check
runs on the very store the process then uses, so no entry point builds them
differently. Imports nothing of Discord: the front uses it too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import bot.objects
from bot.config import Settings
from bot.objects import RetryPolicy
from bot.storage import RecordingStore

if TYPE_CHECKING:
    from bot.objects import ObjectStore

__all__ = ["Stores", "open_stores"]


@dataclasses.dataclass(frozen=True, slots=True)
class Stores:
    """The recording index, and the object store finished recordings go to
    (None: they stay in the recordings folder)."""

    index: RecordingStore
    objects: ObjectStore | None

    def close(self) -> None:
        """Close the index (the object store holds nothing that needs closing)."""
        self.index.close()


def open_stores(settings: Settings, *, check_objects: bool = True) -> Stores:
    """The stores ``settings`` name. With ``check_objects``, the object store must
    first pass its start check (:class:`~bot.objects.StartCheckFailed`: one line
    naming the setting); the index opening may raise
    :class:`~bot.storage.IndexUnavailable` or OSError."""
    objects = None
    if settings.storage is not None:
        objects = bot.objects.ObjectStore(settings.storage, retry=RetryPolicy(budget=settings.storage_retry_seconds))
        if check_objects:
            objects.check()
    index = RecordingStore(settings.recordings_dir, settings.database_path, settings.retention_days,
                           database_url=settings.database_url, index_busy_seconds=settings.index_busy_seconds,
                           remove_objects=objects.delete_prefix if objects is not None else None)
    return Stores(index, objects)
