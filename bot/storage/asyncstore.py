"""The one way to reach a :class:`RecordingStore` from the event loop.

Each call runs in a thread, so file work (renames, deletes) and an index
waiting out another process's lock never block the loop.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from bot.storage.guild_settings import StoredGuildSettings
from bot.storage.index import Recording, RecordingStore
from bot.storage.manifest import Manifest, Note

__all__ = ["AsyncRecordingStore"]


class AsyncRecordingStore:
    """The operations of :class:`RecordingStore` the bot and the download server use, as coroutines.

    ``store`` is the synchronous store underneath, for work that already runs
    in a thread (:mod:`bot.recovery`) and for closing it.
    """

    __slots__ = ("store",)

    def __init__(self, store: RecordingStore) -> None:
        self.store = store

    async def create(self, guild_id: int, guild_name: str, channel_id: int, channel_name: str,
                     *, channels: int = 1, started_at: datetime | None = None) -> Recording:
        """See :meth:`RecordingStore.create`."""
        return await asyncio.to_thread(self.store.create, guild_id, guild_name, channel_id, channel_name,
                                       channels=channels, started_at=started_at)

    async def ping(self) -> bool:
        """See :meth:`RecordingStore.ping`."""
        return await asyncio.to_thread(self.store.ping)

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

    async def add_note(self, recording_id: str, note: Note, *, limit: int) -> bool:
        """See :meth:`RecordingStore.add_note`."""
        return await asyncio.to_thread(self.store.add_note, recording_id, note, limit=limit)

    async def new_manifest(self, recording: Recording) -> Manifest:
        """See :meth:`RecordingStore.new_manifest`."""
        return await asyncio.to_thread(self.store.new_manifest, recording)

    async def finish(self, recording_id: str, manifest: Manifest) -> Manifest:
        """See :meth:`RecordingStore.finish`."""
        return await asyncio.to_thread(self.store.finish, recording_id, manifest)

    async def delete(self, recording_id: str) -> bool:
        """See :meth:`RecordingStore.delete`."""
        return await asyncio.to_thread(self.store.delete, recording_id)

    async def expire(self, now: datetime | None = None) -> list[str]:
        """See :meth:`RecordingStore.expire`."""
        return await asyncio.to_thread(self.store.expire, now)

    async def sweep_cache(self) -> list[str]:
        """See :meth:`RecordingStore.sweep_cache`."""
        return await asyncio.to_thread(self.store.sweep_cache)

    def is_expired(self, recording: Recording) -> bool:
        """See :meth:`RecordingStore.is_expired` (arithmetic only: no thread needed)."""
        return self.store.is_expired(recording)

    def expires_at(self, recording: Recording) -> datetime | None:
        """See :meth:`RecordingStore.expires_at` (arithmetic only: no thread needed)."""
        return self.store.expires_at(recording)

    async def mark_stopping(self, recording: Recording) -> None:
        """:meth:`RecordingStore.mark_stopping` in a thread."""
        await asyncio.to_thread(self.store.mark_stopping, recording)

    async def suspend(self, recording_id: str, at: datetime) -> None:
        """:meth:`RecordingStore.suspend` in a thread."""
        await asyncio.to_thread(self.store.suspend, recording_id, at)

    async def resumed(self, recording_id: str) -> None:
        """:meth:`RecordingStore.resumed` in a thread."""
        await asyncio.to_thread(self.store.resumed, recording_id)

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """See :meth:`RecordingStore.set_opt_out`."""
        await asyncio.to_thread(self.store.set_opt_out, guild_id, user_id, opted_out)

    async def opted_out(self, guild_id: int) -> set[int]:
        """See :meth:`RecordingStore.opted_out`."""
        return await asyncio.to_thread(self.store.opted_out, guild_id)

    async def guild_settings(self, guild_id: int) -> StoredGuildSettings:
        """See :meth:`GuildSettingsTable.get <bot.storage.guild_settings.GuildSettingsTable.get>`."""
        return await asyncio.to_thread(self.store.guild_settings.get, guild_id)

    async def put_guild_settings(self, settings: StoredGuildSettings) -> None:
        """See :meth:`GuildSettingsTable.put <bot.storage.guild_settings.GuildSettingsTable.put>`."""
        await asyncio.to_thread(self.store.guild_settings.put, settings)
