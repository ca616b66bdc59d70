"""Per-server settings in the index: an index made before they existed opens and gains
them, they round-trip, and a server's retention (never past the operator's) decides expiry."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.storage import RecordingStore, StoredGuildSettings

GUILD_A, GUILD_B = 111111111111111111, 222222222222222222

#: The index as the bot wrote it before per-server settings (the released format).
_OLD_SCHEMA = """
CREATE TABLE recordings (
    id TEXT PRIMARY KEY, guild_id INTEGER NOT NULL, guild_name TEXT NOT NULL, channel_id INTEGER NOT NULL,
    channel_name TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, status TEXT NOT NULL,
    secret TEXT NOT NULL, sample_rate INTEGER NOT NULL, channels INTEGER NOT NULL
);
CREATE INDEX recordings_by_guild ON recordings (guild_id, started_at);
CREATE INDEX recordings_by_status ON recordings (status);
CREATE TABLE speakers (
    recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE, user_id INTEGER NOT NULL,
    display_name TEXT NOT NULL, PRIMARY KEY (recording_id, user_id)
);
CREATE TABLE opt_outs (guild_id INTEGER NOT NULL, user_id INTEGER NOT NULL, PRIMARY KEY (guild_id, user_id));
"""


def _old_index(path: Path, ended: datetime) -> None:
    """An index of the old format holding one finished recording per guild and an opt-out."""
    db = sqlite3.connect(path)
    with db:
        db.executescript(_OLD_SCHEMA)
        for rid, guild in (("aaaaaaaa", GUILD_A), ("bbbbbbbb", GUILD_B)):
            db.execute("INSERT INTO recordings VALUES (?, ?, 'G', 1, 'Voice', ?, ?, 'finished', 'k', 48000, 1)",
                       (rid, guild, ended.timestamp() - 60, ended.timestamp()))
        db.execute("INSERT INTO opt_outs VALUES (?, 42)", (GUILD_A,))
    db.close()


def test_an_old_index_gains_per_server_settings_and_they_decide_retention(tmp_path: Path) -> None:
    recordings, index = tmp_path / "recordings", tmp_path / "index.sqlite3"
    recordings.mkdir()
    ended = datetime.now(UTC) - timedelta(days=5)
    _old_index(index, ended)

    with RecordingStore(recordings, index, retention_days=30) as store:
        old = store.get("aaaaaaaa")
        assert old is not None and old.retention == timedelta(days=30)
        assert store.opted_out(GUILD_A) == {42}
        assert store.guild_settings.get(GUILD_A) == StoredGuildSettings(GUILD_A)
        chosen = StoredGuildSettings(GUILD_A, recorder_role_ids=frozenset({7, 8}), retention_days=2.0,
                                     download_format="flac", attach_files=False,
                                     autorecord_channel_ids=frozenset({9}), autorecord_min_members=3,
                                     autorecord_trigger_role_ids=frozenset({10}), autorecord_post_channel_id=11)
        store.guild_settings.put(chosen)

    with RecordingStore(recordings, index, retention_days=30) as store:
        assert store.guild_settings.get(GUILD_A) == chosen
        assert store.guild_settings.get(GUILD_B) == StoredGuildSettings(GUILD_B)
        mine = store.get("aaaaaaaa")
        assert mine is not None and store.expires_at(mine) == mine.ended_at + timedelta(days=2)
        assert store.is_expired(mine)
        assert store.expire() == ["aaaaaaaa"]  # guild B keeps the operator's 30 days
        assert store.get("bbbbbbbb") is not None

    # A server never keeps recordings longer than the operator: 40 days chosen, 1 day allowed.
    with RecordingStore(recordings, index, retention_days=1) as store:
        store.guild_settings.put(StoredGuildSettings(GUILD_B, retention_days=40.0))
        other = store.get("bbbbbbbb")
        assert other is not None and other.retention == timedelta(days=1)

    # Kept forever by the operator: the server's choice alone decides.
    with RecordingStore(recordings, index, retention_days=None) as store:
        other = store.get("bbbbbbbb")
        assert other is not None and other.retention == timedelta(days=40)
        store.guild_settings.put(StoredGuildSettings(GUILD_B))
        other = store.get("bbbbbbbb")
        assert other is not None and other.retention is None and store.expire() == []
