"""Each server's own settings, stored in the index beside its opt-outs.

A row holds only what the server chose; a field left None (or an empty set)
means "the operator's default". Limits (a server may not keep recordings
longer than the operator does) are the bot's to apply, not the store's:
:mod:`bot.guild_config` checks values before they get here, and retention is
clamped again where it is used (:mod:`bot.storage.index`), so lowering
``RETENTION_DAYS`` later binds every server at once.
"""

from __future__ import annotations

import dataclasses
import json

from bot.storage.backend import IndexBackend

__all__ = ["StoredGuildSettings", "GuildSettingsTable"]

_FIELDS = ("recorder_role_ids", "retention_days", "download_format", "attach_files", "autorecord_channel_ids",
           "autorecord_min_members", "autorecord_trigger_role_ids", "autorecord_post_channel_id")
_ID_SETS = frozenset({"recorder_role_ids", "autorecord_channel_ids", "autorecord_trigger_role_ids"})


@dataclasses.dataclass(frozen=True, slots=True)
class StoredGuildSettings:
    """What one server chose; None or empty means the operator's default."""

    guild_id: int
    #: Roles whose members may record; empty: the operator's rule (Manage Server or RECORDER_ROLE).
    recorder_role_ids: frozenset[int] = frozenset()
    #: Days a finished recording is kept; None: the operator's RETENTION_DAYS.
    retention_days: float | None = None
    #: One of :data:`bot.config.DOWNLOAD_FORMATS`; None: the operator's default.
    download_format: str | None = None
    #: Whether the stop summary attaches the files; None: the operator's default.
    attach_files: bool | None = None
    #: Voice channels recorded by themselves when people come.
    autorecord_channel_ids: frozenset[int] = frozenset()
    #: Humans in such a channel that start a recording; None: members alone never start one.
    autorecord_min_members: int | None = None
    #: Members with one of these roles start a recording by joining such a channel.
    autorecord_trigger_role_ids: frozenset[int] = frozenset()
    #: Text channel that hears of autorecordings (start message and stop summary).
    autorecord_post_channel_id: int | None = None


class GuildSettingsTable:
    """Reads and writes ``guild_settings`` (see :mod:`bot.storage.migrations`) through the index's backend."""

    def __init__(self, index: IndexBackend) -> None:
        self._index = index

    def get(self, guild_id: int) -> StoredGuildSettings:
        """The server's settings (all defaults when it never changed any)."""
        rows = self._index.run(lambda tx: tx.execute(
            f"SELECT {', '.join(_FIELDS)} FROM guild_settings WHERE guild_id = ?", (guild_id,),
        ))
        if not rows:
            return StoredGuildSettings(guild_id)
        values = dict(zip(_FIELDS, rows[0], strict=True))
        for name in _ID_SETS:
            values[name] = frozenset(int(i) for i in json.loads(values[name]))
        if values["attach_files"] is not None:
            values["attach_files"] = bool(values["attach_files"])
        return StoredGuildSettings(guild_id, **values)

    def put(self, settings: StoredGuildSettings) -> None:
        """Replace the server's settings with ``settings``."""
        values: list[object] = []
        for name in _FIELDS:
            value = getattr(settings, name)
            if name in _ID_SETS:
                value = json.dumps(sorted(value))
            elif isinstance(value, bool):  # an INTEGER column: PostgreSQL takes no boolean for it
                value = int(value)
            values.append(value)
        updates = ", ".join(f"{name} = excluded.{name}" for name in _FIELDS)
        self._index.run(lambda tx: tx.execute(
            f"INSERT INTO guild_settings (guild_id, {', '.join(_FIELDS)}) VALUES (?, {', '.join('?' * len(_FIELDS))}) "
            f"ON CONFLICT (guild_id) DO UPDATE SET {updates}",
            (settings.guild_id, *values),
        ))
