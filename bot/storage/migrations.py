"""The index's schema, as a numbered list of migrations for both index backends.

Each backend records the versions it applied in ``schema_version`` and, when it
opens, applies the missing ones in order inside one transaction (see
:mod:`bot.storage.sqlite_index` and :mod:`bot.storage.postgres_index`). A
migration is never edited once released: a change of schema is a new one at the
end of :data:`MIGRATIONS`, written for both dialects side by side.

Migration 1 is the index as the bot wrote it before migrations existed. Every
statement says ``IF NOT EXISTS``, so an index made by that code (or an older
one, which lacked some of the tables) adopts version 1 without losing a row.
"""

from __future__ import annotations

import dataclasses

__all__ = ["MIGRATIONS", "Migration", "SCHEMA_VERSION_TABLE", "latest_version", "pending"]


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: the same change in each backend's SQL."""

    version: int
    #: What the step does, for the log.
    summary: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


#: Applied versions, one row each; created by the backends before anything else.
SCHEMA_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)"

_SQLITE_1 = (
    """CREATE TABLE IF NOT EXISTS recordings (
        id TEXT PRIMARY KEY,
        guild_id INTEGER NOT NULL,
        guild_name TEXT NOT NULL,
        channel_id INTEGER NOT NULL,
        channel_name TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT NOT NULL,
        secret TEXT NOT NULL,
        sample_rate INTEGER NOT NULL,
        channels INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS recordings_by_guild ON recordings (guild_id, started_at)",
    "CREATE INDEX IF NOT EXISTS recordings_by_status ON recordings (status)",
    """CREATE TABLE IF NOT EXISTS speakers (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL,
        display_name TEXT NOT NULL,
        PRIMARY KEY (recording_id, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS suspensions (
        recording_id TEXT PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
        suspended_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS notes (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        at REAL NOT NULL,
        author_id INTEGER NOT NULL,
        author_name TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS opt_outs (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS guild_settings (
        guild_id INTEGER PRIMARY KEY,
        recorder_role_ids TEXT NOT NULL DEFAULT '[]',
        retention_days REAL,
        download_format TEXT,
        attach_files INTEGER,
        autorecord_channel_ids TEXT NOT NULL DEFAULT '[]',
        autorecord_min_members INTEGER,
        autorecord_trigger_role_ids TEXT NOT NULL DEFAULT '[]',
        autorecord_post_channel_id INTEGER
    )""",
)

# The same tables in PostgreSQL's types: Discord ids are 63-bit (BIGINT), times
# are Unix seconds (DOUBLE PRECISION). Speakers and notes carry ``seq`` where
# SQLite has its implicit rowid: the order they were first written in.
_POSTGRES_1 = (
    """CREATE TABLE IF NOT EXISTS recordings (
        id TEXT PRIMARY KEY,
        guild_id BIGINT NOT NULL,
        guild_name TEXT NOT NULL,
        channel_id BIGINT NOT NULL,
        channel_name TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION,
        status TEXT NOT NULL,
        secret TEXT NOT NULL,
        sample_rate INTEGER NOT NULL,
        channels INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS recordings_by_guild ON recordings (guild_id, started_at)",
    "CREATE INDEX IF NOT EXISTS recordings_by_status ON recordings (status)",
    """CREATE TABLE IF NOT EXISTS speakers (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL,
        display_name TEXT NOT NULL,
        PRIMARY KEY (recording_id, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS suspensions (
        recording_id TEXT PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
        suspended_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS notes (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        at DOUBLE PRECISION NOT NULL,
        author_id BIGINT NOT NULL,
        author_name TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS opt_outs (
        guild_id BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS guild_settings (
        guild_id BIGINT PRIMARY KEY,
        recorder_role_ids TEXT NOT NULL DEFAULT '[]',
        retention_days DOUBLE PRECISION,
        download_format TEXT,
        attach_files INTEGER,
        autorecord_channel_ids TEXT NOT NULL DEFAULT '[]',
        autorecord_min_members INTEGER,
        autorecord_trigger_role_ids TEXT NOT NULL DEFAULT '[]',
        autorecord_post_channel_id BIGINT
    )""",
)

# Where a finished recording's files are, once the object store holds them:
# ``prefix`` (the object names' common start) is set only when every file was
# verified in the store; ``local_removed`` once its folder was deleted after
# that. ``attempts`` and ``last_error`` tell operators about uploads that fail.
# A recording without a row here is in its local folder only.
_SQLITE_2 = (
    """CREATE TABLE uploads (
        recording_id TEXT PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
        prefix TEXT,
        stored_at REAL,
        local_removed INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    )""",
)
_POSTGRES_2 = (
    """CREATE TABLE uploads (
        recording_id TEXT PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
        prefix TEXT,
        stored_at DOUBLE PRECISION,
        local_removed INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    )""",
)

# Which recordings folder holds a recording's files (see RecordingStore.owner): with one
# index shared by several processes, each start recovers only what is on its own disk.
_OWNER = ("ALTER TABLE recordings ADD COLUMN owner TEXT",)

# Which process runs each gateway shard (bot.shard_claim): a lease renewed by its holder,
# timed by the database's clock (Unix seconds). ``owner`` is the holder's recordings folder
# (RecordingStore.owner); host and pid are for the message that refuses a second process.
# Every claim first updates the single guard row, so claims of processes starting together
# run one after the other (a row lock on PostgreSQL, the write lock on SQLite).
# ``identify_slots``: per IDENTIFY rate-limit bucket, the earliest time the next IDENTIFY
# of that bucket may be sent, by any process sharing the index (bot.identify_pacing).
_SHARDS = (
    """CREATE TABLE shard_leases (
        shard_id INTEGER PRIMARY KEY,
        shard_count INTEGER NOT NULL,
        owner TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL
    )""",
    "CREATE TABLE shard_lease_guard (id INTEGER PRIMARY KEY, claims BIGINT NOT NULL)",
    "INSERT INTO shard_lease_guard (id, claims) VALUES (1, 0)",
    """CREATE TABLE identify_slots (
        bucket INTEGER PRIMARY KEY,
        next_at DOUBLE PRECISION NOT NULL
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "recordings, speakers, suspensions, notes, opt-outs and server settings", _SQLITE_1, _POSTGRES_1),
    Migration(2, "uploads: which recordings are in the object store, and whether their folder is gone",
              _SQLITE_2, _POSTGRES_2),
    Migration(3, "the recordings folder each recording is written in", _OWNER, _OWNER),
    Migration(4, "shard leases and IDENTIFY slots shared by the bot processes", _SHARDS, _SHARDS),
)


def latest_version() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1].version


def pending(current: int) -> list[Migration]:
    """The migrations an index at version ``current`` still needs, in order.

    Raises :class:`ValueError` when the index is newer than this code: an older
    bot must not write to a schema it does not know.
    """
    if current > latest_version():
        raise ValueError(f"the index has schema version {current}, newer than this bot knows "
                         f"({latest_version()}): run a newer version of the bot")
    return [m for m in MIGRATIONS if m.version > current]
