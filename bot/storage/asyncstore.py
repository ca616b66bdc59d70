"""Awaitable access to a :class:`RecordingStore`, each call run in a thread so
file work (renames, deletes, header repair) never blocks the event loop."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bot.storage.index import Recording, RecordingStore
from bot.storage.manifest import Manifest

__all__ = ["AsyncRecordingStore"]


class AsyncRecordingStore:
    """The same operations as :class:`RecordingStore`, as coroutines."""

    __slots__ = ("store",)

    def __init__(self, store: RecordingStore) -> None:
        self.store = store

    async def create(
        self, guild_id: int, guild_name: str, channel_id: int, channel_name: str,
        *, sample_rate: int = 48000, channels: int = 1, started_at: datetime | None = None,
    ) -> Recording:
        """See :meth:`RecordingStore.create`."""
        return await asyncio.to_thread(
            self.store.create, guild_id, guild_name, channel_id, channel_name,
            sample_rate=sample_rate, channels=channels, started_at=started_at,
        )

    async def get(self, recording_id: str) -> Recording | None:
        """See :meth:`RecordingStore.get`."""
        return await asyncio.to_thread(self.store.get, recording_id)

    async def read_manifest(self, recording: Recording) -> Manifest:
        """See :meth:`RecordingStore.read_manifest`."""
        return await asyncio.to_thread(self.store.read_manifest, recording)

    async def list(self, guild_id: int) -> list[Recording]:
        """See :meth:`RecordingStore.list`."""
        return await asyncio.to_thread(self.store.list, guild_id)

    async def note_speaker(self, recording_id: str, user_id: int, display_name: str) -> None:
        """See :meth:`RecordingStore.note_speaker`."""
        await asyncio.to_thread(self.store.note_speaker, recording_id, user_id, display_name)

    async def new_manifest(self, recording: Recording) -> Manifest:
        """See :meth:`RecordingStore.new_manifest`."""
        return await asyncio.to_thread(self.store.new_manifest, recording)

    async def finish(self, recording_id: str, manifest: Manifest, *, ended_at: datetime | None = None) -> Manifest:
        """See :meth:`RecordingStore.finish`."""
        return await asyncio.to_thread(self.store.finish, recording_id, manifest, ended_at=ended_at)

    async def mark_interrupted(
        self, recording_id: str, manifest: Manifest | None = None, *, ended_at: datetime | None = None
    ) -> Manifest:
        """See :meth:`RecordingStore.mark_interrupted`."""
        return await asyncio.to_thread(self.store.mark_interrupted, recording_id, manifest, ended_at=ended_at)

    async def close_unfinished(self, recording_id: str, manifest: Manifest | None) -> Manifest:
        """See :meth:`RecordingStore.close_unfinished`."""
        return await asyncio.to_thread(self.store.close_unfinished, recording_id, manifest)

    async def delete(self, recording_id: str) -> bool:
        """See :meth:`RecordingStore.delete`."""
        return await asyncio.to_thread(self.store.delete, recording_id)

    async def expire(self, now: datetime | None = None) -> list[str]:
        """See :meth:`RecordingStore.expire`."""
        return await asyncio.to_thread(self.store.expire, now)

    async def recover(self) -> list[Recording]:
        """See :meth:`RecordingStore.recover`."""
        return await asyncio.to_thread(self.store.recover)

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """See :meth:`RecordingStore.set_opt_out`."""
        await asyncio.to_thread(self.store.set_opt_out, guild_id, user_id, opted_out)

    async def opted_out(self, guild_id: int) -> set[int]:
        """See :meth:`RecordingStore.opted_out`."""
        return await asyncio.to_thread(self.store.opted_out, guild_id)
