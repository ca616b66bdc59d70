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
import sqlite3
import threading

__all__ = ["StoredGuildSettings", "GuildSettingsTable", "GUILD_SETTINGS_SCHEMA"]

#: Added to indexes made before per-server settings existed: CREATE ... IF NOT EXISTS
#: is the whole migration (a new table, nothing of the old ones changes).
GUILD_SETTINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id INTEGER PRIMARY KEY,
    recorder_role_ids TEXT NOT NULL DEFAULT '[]',
    retention_days REAL,
    download_format TEXT,
    attach_files INTEGER,
    autorecord_channel_ids TEXT NOT NULL DEFAULT '[]',
    autorecord_min_members INTEGER,
    autorecord_trigger_role_ids TEXT NOT NULL DEFAULT '[]',
    autorecord_post_channel_id INTEGER
);
"""

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
    """Reads and writes ``guild_settings`` through the index's connection and lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock
        with self._lock, self._db:
            self._db.executescript(GUILD_SETTINGS_SCHEMA)

    def get(self, guild_id: int) -> StoredGuildSettings:
        """The server's settings (all defaults when it never changed any)."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM guild_settings WHERE guild_id = ?",
                                   (guild_id,)).fetchone()
        if row is None:
            return StoredGuildSettings(guild_id)
        values = dict(zip(_FIELDS, row, strict=True))
        for name in _ID_SETS:
            values[name] = frozenset(int(i) for i in json.loads(values[name]))
        if values["attach_files"] is not None:
            values["attach_files"] = bool(values["attach_files"])
        return StoredGuildSettings(guild_id, **values)

    def put(self, settings: StoredGuildSettings) -> None:
        """Replace the server's settings with ``settings``."""
        values = []
        for name in _FIELDS:
            value = getattr(settings, name)
            values.append(json.dumps(sorted(value)) if name in _ID_SETS else value)
        with self._lock, self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO guild_settings (guild_id, {', '.join(_FIELDS)}) "
                f"VALUES (?, {', '.join('?' * len(_FIELDS))})",
                (settings.guild_id, *values),
            )
