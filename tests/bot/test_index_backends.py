"""The index's two backends: schema versions and migrations, an index written before
migrations existed, per-server settings on both, and PostgreSQL coming and going."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bot.storage import IndexUnavailable, Note, RecordingStore, StoredGuildSettings
from bot.storage.migrations import latest_version
from tests.bot.conftest import IndexUnderTest
from tests.postgres import running_server

GUILD_A, GUILD_B = 111111111111111111, 222222222222222222
ALICE, BOB, CAROL = 1234567890, 9876543210, 5550001112
STARTED = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
#: The schema of the last release before migrations, frozen from its source (commit e412ce1).
_E412CE1_SCHEMA = (Path(__file__).parent / "data" / "index_e412ce1.sql").read_text()


def _versions(index: IndexUnderTest, store: RecordingStore) -> list[int]:
    """The schema versions the database says were applied."""
    sql = "SELECT version FROM schema_version ORDER BY version"
    if index.url is None:
        assert store.database_path is not None
        with sqlite3.connect(store.database_path) as db:
            return [v for (v,) in db.execute(sql)]
    with psycopg.connect(index.url) as db:
        return [v for (v,) in db.execute(sql)]


def _e412ce1_index(path: Path) -> None:
    """An index as the code of e412ce1 left it: every table holds rows, the way that code wrote them."""
    start = STARTED.timestamp()
    with sqlite3.connect(path) as db:
        db.executescript(_E412CE1_SCHEMA)
        db.executemany("INSERT INTO recordings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            ("aaaaaaaa", GUILD_A, "Guild A", 42, "General", start, start + 600.5, "finished", "key-a", 48000, 1),
            ("bbbbbbbb", GUILD_A, "Guild A", 42, "General", start + 3600, None, "recording", "key-b", 48000, 2),
            ("cccccccc", GUILD_B, "Guild B", 43, "Stage", start + 60, start + 120, "interrupted", "key-c", 48000, 1),
        ])
        # Bob was heard first, then Alice; Carol's name changed once (the upsert kept her row).
        db.executemany("INSERT INTO speakers VALUES (?, ?, ?)",
                       [("aaaaaaaa", BOB, "Bob"), ("aaaaaaaa", ALICE, "Alice"), ("bbbbbbbb", CAROL, "Carol")])
        db.execute("UPDATE speakers SET display_name = 'Carol (DJ)' WHERE user_id = ?", (CAROL,))
        db.execute("INSERT INTO suspensions VALUES ('bbbbbbbb', ?)", (start + 4000.25,))
        db.executemany("INSERT INTO notes VALUES (?, ?, ?, ?, ?)", [
            ("aaaaaaaa", 12.5, ALICE, "Alice", "intro ends"),
            ("aaaaaaaa", 3.0, BOB, "Bob", "🎙️ cold open"),
            ("aaaaaaaa", 12.5, BOB, "Bob", "same moment, written later"),
        ])
        db.executemany("INSERT INTO opt_outs VALUES (?, ?)", [(GUILD_A, CAROL), (GUILD_B, ALICE)])
        db.execute("INSERT INTO guild_settings VALUES (?, '[7, 8]', 2.5, 'flac', 0, '[9]', 3, '[10]', 11)", (GUILD_A,))
        db.execute("INSERT INTO guild_settings (guild_id, attach_files) VALUES (?, 1)", (GUILD_B,))
    db.close()


def test_an_index_written_by_the_last_release_upgrades_without_losing_a_row(tmp_path: Path) -> None:
    recordings, database = tmp_path / "recordings", tmp_path / "index.sqlite3"
    _e412ce1_index(database)
    index = IndexUnderTest("sqlite", None)

    for _ in range(2):  # upgraded once; the second opening finds nothing left to do
        with RecordingStore(recordings, database, retention_days=None) as store:
            assert _versions(index, store) == list(range(1, latest_version() + 1))
            finished, running, other = store.get("aaaaaaaa"), store.get("bbbbbbbb"), store.get("cccccccc")
            assert finished is not None and running is not None and other is not None
            assert (finished.guild_id, finished.guild_name, finished.channel_id, finished.channel_name) == (
                GUILD_A, "Guild A", 42, "General")
            assert finished.started_at == STARTED and finished.ended_at == STARTED + timedelta(seconds=600.5)
            assert (finished.status, finished.secret, finished.sample_rate, finished.channels) == (
                "finished", "key-a", 48000, 1)
            assert finished.retention == timedelta(days=2.5)  # its server's setting
            assert running.status == "recording" and running.ended_at is None and running.channels == 2
            assert other.status == "interrupted" and other.retention is None
            assert [r.id for r in store.list(GUILD_A)] == ["bbbbbbbb", "aaaaaaaa"]
            assert [r.id for r in store.list(GUILD_B)] == ["cccccccc"]
            assert [r.id for r in store.unfinished()] == ["bbbbbbbb"]

            manifest = store.new_manifest(finished)
            assert [(s.user_id, s.display_name) for s in manifest.speakers] == [(BOB, "Bob"), (ALICE, "Alice")]
            assert manifest.notes == [Note(3.0, "🎙️ cold open", BOB, "Bob"), Note(12.5, "intro ends", ALICE, "Alice"),
                                      Note(12.5, "same moment, written later", BOB, "Bob")]
            assert [(s.user_id, s.display_name) for s in store.new_manifest(running).speakers] == [
                (CAROL, "Carol (DJ)")]
            assert store.suspended_at("bbbbbbbb") == STARTED + timedelta(seconds=4000.25)
            assert store.opted_out(GUILD_A) == {CAROL} and store.opted_out(GUILD_B) == {ALICE}
            assert store.guild_settings.get(GUILD_A) == StoredGuildSettings(
                GUILD_A, recorder_role_ids=frozenset({7, 8}), retention_days=2.5, download_format="flac",
                attach_files=False, autorecord_channel_ids=frozenset({9}), autorecord_min_members=3,
                autorecord_trigger_role_ids=frozenset({10}), autorecord_post_channel_id=11)
            assert store.guild_settings.get(GUILD_B) == StoredGuildSettings(GUILD_B, attach_files=True)


def test_the_schema_version_is_recorded_and_each_migration_runs_once(tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "r") as store:
        assert _versions(index, store) == list(range(1, latest_version() + 1))
        rec = store.create(GUILD_A, "A", 1, "vc")
    with index.open(tmp_path / "r") as store:
        assert _versions(index, store) == list(range(1, latest_version() + 1))
        assert store.get(rec.id) is not None


def test_an_index_newer_than_the_bot_is_refused_in_one_line(tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "r") as store:
        index.execute(store, "INSERT INTO schema_version (version) VALUES (?)", (latest_version() + 1,))
    with pytest.raises(IndexUnavailable) as refused:
        index.open(tmp_path / "r")
    message = str(refused.value)
    assert f"schema version {latest_version() + 1}, newer than this bot knows" in message and "\n" not in message


def test_server_settings_round_trip_and_bind_retention(tmp_path: Path, index: IndexUnderTest) -> None:
    chosen = StoredGuildSettings(GUILD_A, recorder_role_ids=frozenset({7, 2**62}), retention_days=2.0,
                                 download_format="ogg", attach_files=False, autorecord_channel_ids=frozenset({9}),
                                 autorecord_min_members=3, autorecord_trigger_role_ids=frozenset({10}),
                                 autorecord_post_channel_id=2**63 - 1)
    with index.open(tmp_path / "r", retention_days=30) as store:
        assert store.guild_settings.get(GUILD_A) == StoredGuildSettings(GUILD_A)
        store.guild_settings.put(chosen)
        store.guild_settings.put(chosen)  # replacing is idempotent
        rec = store.create(GUILD_A, "A", 1, "vc", started_at=datetime.now(UTC) - timedelta(days=5))
        store.finish(rec.id, store.new_manifest(rec), ended_at=datetime.now(UTC) - timedelta(days=4))
    with index.open(tmp_path / "r", retention_days=1) as store:  # the operator's limit binds every server
        assert store.guild_settings.get(GUILD_A) == chosen
        assert store.guild_settings.get(GUILD_B) == StoredGuildSettings(GUILD_B)
        got = store.get(rec.id)
        assert got is not None and got.retention == timedelta(days=1)
        store.guild_settings.put(StoredGuildSettings(GUILD_A, attach_files=True))
        assert store.guild_settings.get(GUILD_A) == StoredGuildSettings(GUILD_A, attach_files=True)
        assert store.expire() == [rec.id]


def test_processes_opening_a_fresh_postgres_database_together_migrate_it_once(
        tmp_path: Path, postgres_url: str) -> None:
    index = IndexUnderTest("postgresql", postgres_url)
    stores: list[RecordingStore] = []
    failures: list[BaseException] = []
    gate = threading.Barrier(4)

    def open_one(n: int) -> None:
        gate.wait()
        try:
            stores.append(index.open(tmp_path / f"r{n}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=open_one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not failures, failures
        assert len(stores) == 4
        assert _versions(index, stores[0]) == list(range(1, latest_version() + 1))
        rec = stores[0].create(GUILD_A, "A", 1, "vc")
        assert all(s.get(rec.id) is not None for s in stores)  # one index, shared
    finally:
        for store in stores:
            store.close()


def test_the_postgres_index_reconnects_after_the_server_restarts(tmp_path: Path) -> None:
    with running_server() as server:
        name = server.create_database()
        with RecordingStore(tmp_path / "r", database_url=server.url(name)) as store:
            rec = store.create(GUILD_A, "A", 1, "vc")
            store.note_speaker(rec.id, ALICE, "Alice")
            assert store.ping()

            server.stop("fast")
            server.start()
            # The connection died with the server: replaced, and the write goes through.
            store.note_speaker(rec.id, CAROL, "Carol")

            server.stop("fast")
            began = time.monotonic()
            with pytest.raises(IndexUnavailable) as down:
                store.note_speaker(rec.id, BOB, "Bob")
            assert time.monotonic() - began < 30  # refused at once, not after a long hang
            assert server.password not in str(down.value) and "\n" not in str(down.value)
            assert not store.ping()

            server.start()
            # The same store, no reopening: the next operation connects again.
            store.note_speaker(rec.id, BOB, "Bob")
            assert store.ping()
            assert [s.user_id for s in store.new_manifest(rec).speakers] == [ALICE, CAROL, BOB]
