"""Recording index and folders: lifecycle, guild scoping, opt-outs, retention,
the async store; on each index backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.storage import (
    AsyncRecordingStore,
    Manifest,
    RecordingStore,
    Speaker,
    StorageError,
    free_disk_mb,
    has_free_space,
    is_recording_id,
    new_recording_id,
    new_secret,
    speaker_filename,
)
from tests.bot.conftest import IndexUnderTest
from tests.bot.wavgen import read_wav, tone, write_wav

GUILD_A, GUILD_B = 111111111111111111, 222222222222222222
ALICE, BOB = 1234567890, 9876543210


@pytest.fixture
def store(tmp_path: Path, index: IndexUnderTest) -> RecordingStore:
    s = index.open(tmp_path / "recordings", retention_days=30)
    yield s
    s.close()


def test_ids_and_secrets() -> None:
    ids = {new_recording_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 8 and is_recording_id(i) for i in ids)
    assert not any(set(i) & set("01ilo") for i in ids)
    assert not is_recording_id("../etc/p") and not is_recording_id("abcdefgh/") and not is_recording_id("")
    secret = new_secret()
    assert len(secret) >= 32 and len({new_secret() for _ in range(100)}) == 100  # 192 bits urlsafe


@pytest.mark.parametrize(
    ("name", "uid", "expected"),
    [
        ("Alice", ALICE, f"alice-{ALICE}.wav"),
        ("../../etc/passwd", 5, "etc_passwd-5.wav"),
        ("a/b\\c:d*e?f", 6, "a_b_c_d_e_f-6.wav"),
        ("Ünïcödé Ñame", 7, "ünïcödé_ñame-7.wav"),
        ("日本語", 8, "日本語-8.wav"),
        ("...", 9, "speaker-9.wav"),
        ("", 10, "speaker-10.wav"),
        ("x" * 100, 11, "x" * 32 + "-11.wav"),
        ("<script>", 12, "script-12.wav"),
    ],
)
def test_speaker_filename(name: str, uid: int, expected: str) -> None:
    assert speaker_filename(name, uid) == expected
    assert "/" not in expected and "\\" not in expected


def test_lifecycle(store: RecordingStore) -> None:
    started = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    rec = store.create(GUILD_A, "Guild A", 42, "General", started_at=started)
    assert rec.status == "recording" and rec.started_at == started and rec.ended_at is None
    assert rec.directory == store.recordings_dir / rec.id and rec.directory.is_dir()
    assert rec.secret not in repr(rec)
    assert rec.download_path == f"/r/{rec.id}?key={rec.secret}"
    assert Manifest.read(rec.directory).status == "recording"

    # The engine writes <user_id>.wav; names arrive as speakers are heard.
    write_wav(rec.directory / f"{ALICE}.wav", tone(440, 0.5))
    write_wav(rec.directory / f"{BOB}.wav", tone(660, 0.5))
    store.note_speaker(rec.id, ALICE, "Alice")
    store.note_speaker(rec.id, BOB, "bob")
    store.note_speaker(rec.id, BOB, "Bob the Builder")  # renamed mid-recording: last name wins

    manifest = store.new_manifest(rec)
    assert [(s.user_id, s.display_name) for s in manifest.speakers] == [(ALICE, "Alice"), (BOB, "Bob the Builder")]
    manifest.speakers[0].talk_seconds, manifest.speakers[0].packets, manifest.speakers[0].losses = 0.5, 25, 1
    ended = started + timedelta(minutes=3)
    final = store.finish(rec.id, manifest, ended_at=ended)

    assert sorted(p.name for p in rec.directory.iterdir()) == [
        f"alice-{ALICE}.wav", f"bob_the_builder-{BOB}.wav", "manifest.json",
    ]
    np.testing.assert_array_equal(read_wav(rec.directory / f"alice-{ALICE}.wav"), tone(440, 0.5))
    data = json.loads((rec.directory / "manifest.json").read_text())
    assert data["status"] == "finished" and data["id"] == rec.id
    assert data["guild"] == {"id": str(GUILD_A), "name": "Guild A"}
    assert data["channel"] == {"id": "42", "name": "General"}
    assert data["started_at"] == "2026-11-20T10:00:00.000Z" and data["ended_at"] == "2026-11-20T10:03:00.000Z"
    assert data["sample_rate"] == 48000 and data["channels"] == 1
    assert data["speakers"][0] == {
        "user_id": str(ALICE), "display_name": "Alice", "file": f"alice-{ALICE}.wav",
        "talk_seconds": 0.5, "packets": 25, "losses": 1,
    }
    assert Manifest.read(rec.directory) == final

    got = store.get(rec.id.upper() + " ")  # typed by a user
    assert got is not None and got.status == "finished" and got.ended_at == ended
    assert [r.id for r in store.list(GUILD_A)] == [rec.id]

    assert store.delete(rec.id) is True
    assert not rec.directory.exists()
    assert store.get(rec.id) is None and store.list(GUILD_A) == []
    assert store.delete(rec.id) is False


def test_finish_names_undescribed_tracks_and_drops_silent_speakers(store: RecordingStore) -> None:
    rec = store.create(GUILD_A, "A", 1, "vc")
    write_wav(rec.directory / "555.wav", tone(300, 0.1))
    manifest = store.new_manifest(rec)
    manifest.speakers.append(Speaker(777, "Never Spoke"))
    manifest.speakers.append(Speaker(555, "Evil", file="../../escape.wav"))
    final = store.finish(rec.id, manifest)
    assert [(s.user_id, s.file) for s in final.speakers] == [(555, "evil-555.wav")]
    assert (rec.directory / "evil-555.wav").is_file()
    with pytest.raises(StorageError):
        store.finish("zzzzzzzz", manifest)


def test_guild_scoping(store: RecordingStore) -> None:
    a1 = store.create(GUILD_A, "A", 1, "a-vc")
    b1 = store.create(GUILD_B, "B", 2, "b-vc")
    a2 = store.create(GUILD_A, "A", 1, "a-vc", started_at=a1.started_at + timedelta(seconds=5))
    assert [r.id for r in store.list(GUILD_A)] == [a2.id, a1.id]
    assert [r.id for r in store.list(GUILD_B)] == [b1.id]
    assert all(r.guild_id == GUILD_A for r in store.list(GUILD_A))
    assert store.list(333) == []
    assert len({a1.secret, a2.secret, b1.secret}) == 3


def test_opt_outs_persist_across_reopen(tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "rec") as s:
        s.set_opt_out(GUILD_A, ALICE, True)
        s.set_opt_out(GUILD_A, BOB, True)
        s.set_opt_out(GUILD_A, BOB, True)
        s.set_opt_out(GUILD_B, BOB, True)
        s.set_opt_out(GUILD_A, BOB, False)
    with index.open(tmp_path / "rec") as s:
        assert s.opted_out(GUILD_A) == {ALICE}
        assert s.opted_out(GUILD_B) == {BOB}
        assert s.opted_out(333) == set()
        assert s.ping()
        database = s.database_path
    if index.kind == "sqlite":
        assert database is not None
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    else:
        assert database is None


def test_retention_counts_from_the_end(store: RecordingStore) -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def recorded(started_days_ago: float, ended_days_ago: float) -> str:
        rec = store.create(GUILD_A, "A", 1, "vc", started_at=now - timedelta(days=started_days_ago))
        store.finish(rec.id, store.new_manifest(rec), ended_at=now - timedelta(days=ended_days_ago))
        return rec.id

    old = recorded(31, 30.9)
    edge = recorded(30, 29.99)
    # Longer than the retention itself: expiry counts from its end, so it is not dead on arrival.
    long = recorded(40, 1)
    running = store.create(GUILD_B, "B", 1, "vc", started_at=now - timedelta(days=40))
    assert store.is_expired(store.get(old), now) and not store.is_expired(store.get(edge), now)
    assert not store.is_expired(store.get(long), now)
    assert store.expires_at(store.get(long)) == now + timedelta(days=29)
    assert store.expires_at(store.get(running.id)) is None

    assert store.expire(now) == [old]
    assert store.get(old) is None and not (store.recordings_dir / old).exists()
    assert store.get(edge) is not None and (store.recordings_dir / edge).is_dir()
    assert store.get(running.id) is not None  # still being recorded: never deleted under the recorder
    assert store.expire(now + timedelta(days=1)) == [edge]
    assert store.expire(now + timedelta(days=29)) == [long]


def test_no_retention_keeps_everything(tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "r", retention_days=None) as s:
        rec = s.create(GUILD_A, "A", 1, "vc", started_at=datetime(2000, 1, 1, tzinfo=UTC))
        s.finish(rec.id, s.new_manifest(rec))
        assert s.expire() == [] and not s.is_expired(s.get(rec.id))


def test_free_disk(tmp_path: Path) -> None:
    free = free_disk_mb(tmp_path / "does" / "not" / "exist")
    stat = os.statvfs(tmp_path)
    assert abs(free - stat.f_bavail * stat.f_frsize // 2**20) <= 64  # others write to the disk meanwhile
    assert has_free_space(tmp_path, 0)
    assert not has_free_space(tmp_path, free + 10**9)


def test_async_store(tmp_path: Path, index: IndexUnderTest) -> None:
    async def main() -> None:
        store = AsyncRecordingStore(index.open(tmp_path / "r"))
        rec = await store.create(GUILD_A, "A", 1, "vc")
        await store.note_speaker(rec.id, ALICE, "Alice")
        write_wav(rec.directory / f"{ALICE}.wav", tone(200, 0.1))
        final = await store.finish(rec.id, await store.new_manifest(rec))
        assert final.speakers[0].file == f"alice-{ALICE}.wav"
        assert [r.id for r in await store.list(GUILD_A)] == [rec.id]
        assert (await store.get(rec.id)).status == "finished"
        await store.set_opt_out(GUILD_A, BOB, True)
        assert await store.opted_out(GUILD_A) == {BOB}
        assert await store.expire() == [] and not store.is_expired(rec)
        assert (await store.read_manifest(rec)).speakers == final.speakers
        assert await store.delete(rec.id)
        store.store.close()

    asyncio.run(main())


def test_suspension_and_stop_marks_last_until_the_recording_closes(tmp_path: Path, index: IndexUnderTest) -> None:
    """A restart reads both from a fresh store: the suspension from the index, the begun stop from the folder."""
    with index.open(tmp_path) as first:
        paused = first.create(1, "g", 2, "voice")
        stopping = first.create(1, "g", 3, "other")
        first.suspend(paused.id, datetime(2026, 12, 4, 16, 20, 5, tzinfo=UTC))
        first.mark_stopping(stopping)
    with index.open(tmp_path) as again:
        assert again.suspended_at(paused.id) == datetime(2026, 12, 4, 16, 20, 5, tzinfo=UTC)
        assert again.suspended_at(stopping.id) is None
        assert again.stop_begun(stopping) and not again.stop_begun(paused)
        again.resumed(paused.id)
        assert again.suspended_at(paused.id) is None
        again.suspend(paused.id, datetime(2026, 12, 4, 17, 0, tzinfo=UTC))
        for rec in (paused, stopping):
            again.finish(rec.id, again.new_manifest(rec))
            assert again.suspended_at(rec.id) is None and not again.stop_begun(rec)
