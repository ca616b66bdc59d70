"""Where a recording's files are, on both index backends: the object store's
copy once verified, the local folder going only after that, pending uploads
surviving a reopen (a restart), and retention deleting the objects too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.storage import RecordingStore, StorageError
from tests.bot.conftest import IndexUnderTest
from tests.bot.wavgen import bursts, write_wav

GUILD = 111111111111111111


def _finished(store: RecordingStore, ended: datetime | None = None) -> str:
    started = ended - timedelta(minutes=1) if ended else None
    rec = store.create(GUILD, "G", 1, "vc", started_at=started)
    write_wav(rec.directory / "4444.wav", bursts(300.0, 0.5, [(0, 0.5)]))
    store.note_speaker(rec.id, 4444, "Dee")
    store.finish(rec.id, store.new_manifest(rec), ended_at=ended)
    return rec.id


def test_a_finished_recording_waits_for_the_store_until_marked_and_its_folder_goes_after(
        tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "r") as store:
        running = store.create(GUILD, "G", 1, "vc")
        first, second = _finished(store), _finished(store)
        assert [r.id for r in store.pending_offloads(keep_local=False)] == [first, second]
        assert running.id not in [r.id for r in store.pending_offloads(keep_local=False)]
        rec = store.require(first)
        assert rec.stored_prefix is None and rec.local_removed is False
        with pytest.raises(StorageError):
            store.remove_local_copy(first)  # not in the store: the folder stays
        assert rec.directory.is_dir()

        store.note_upload_failure(first, "recording upload x/: cannot reach the object store")
        store.note_upload_failure(first, "the second reason")
        assert store.upload_failures(first) == (2, "the second reason")
    with index.open(tmp_path / "r") as store:  # a restart finds the same work
        assert [r.id for r in store.pending_offloads(keep_local=False)] == [first, second]
        store.mark_uploaded(first, f"{first}/")
        rec = store.require(first)
        assert rec.stored_prefix == f"{first}/" and not rec.local_removed
        assert store.upload_failures(first) == (2, None)
        # Verified but still here: kept when the operator keeps local copies, else its removal is pending.
        assert [r.id for r in store.pending_offloads(keep_local=True)] == [second]
        assert [r.id for r in store.pending_offloads(keep_local=False)] == [first, second]

        store.remove_local_copy(first, keep=("manifest.json",))
        rec = store.require(first)
        assert rec.local_removed and not rec.directory.exists()
        assert (store.cache_directory(rec) / "manifest.json").is_file()
        assert [r.id for r in store.pending_offloads(keep_local=False)] == [second]
    with index.open(tmp_path / "r") as store:
        rec = store.require(first)
        assert (rec.stored_prefix, rec.local_removed) == (f"{first}/", True)
        assert [r.id for r in store.list(GUILD) if r.stored_prefix] == [first]


def test_retention_and_delete_remove_the_objects_first(tmp_path: Path, index: IndexUnderTest) -> None:
    removed: list[str] = []
    failing = {"on": True}

    def remove_objects(prefix: str) -> None:
        if failing["on"]:
            raise OSError("the object store is not answering")
        removed.append(prefix)

    with RecordingStore(tmp_path / "r", retention_days=1, database_url=index.url,
                        remove_objects=remove_objects) as store:
        old = _finished(store, datetime.now(UTC) - timedelta(days=2))
        kept_local = _finished(store, datetime.now(UTC) - timedelta(days=2))
        store.mark_uploaded(old, f"{old}/")
        store.remove_local_copy(old, keep=("manifest.json",))
        cache = store.cache_directory(store.require(old))

        assert store.expire() == [kept_local]  # objects that would not go keep their row for the next sweep
        assert store.get(old) is not None and removed == []
        failing["on"] = False
        assert store.expire() == [old]
        assert removed == [f"{old}/"] and store.get(old) is None and not cache.exists()

        deleted = _finished(store)
        store.mark_uploaded(deleted, f"{deleted}/")
        failing["on"] = True
        with pytest.raises(StorageError):
            store.delete(deleted)
        assert store.get(deleted) is not None and store.require(deleted).directory.is_dir()
        failing["on"] = False
        assert store.delete(deleted)
        assert removed[-1] == f"{deleted}/" and store.get(deleted) is None


def test_retention_leaves_another_folders_recording_to_its_process_until_only_objects_are_left(
        tmp_path: Path, index: IndexUnderTest) -> None:
    removed: list[str] = []
    database = tmp_path / "index.sqlite3" if index.url is None else None
    # Two bot processes sharing one index, each with its own recordings folder.
    with RecordingStore(tmp_path / "a", database, retention_days=1, database_url=index.url,
                        remove_objects=removed.append) as a, \
            RecordingStore(tmp_path / "b", database, retention_days=1, database_url=index.url,
                           remove_objects=removed.append) as b:
        assert a.owner != b.owner
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        on_a = _finished(a, two_days_ago)  # never uploaded: only a's disk has it
        kept = _finished(a, two_days_ago)  # uploaded, and a keeps its local copy (KEEP_LOCAL_COPY)
        a.mark_uploaded(kept, f"{kept}/")
        only_objects = _finished(a, two_days_ago)
        a.mark_uploaded(only_objects, f"{only_objects}/")
        a.remove_local_copy(only_objects)
        mine = _finished(b, two_days_ago)

        assert sorted(b.expire()) == sorted([only_objects, mine])
        assert removed == [f"{only_objects}/"] and b.get(only_objects) is None
        assert a.require(on_a).directory.is_dir() and a.require(kept).directory.is_dir()
        assert sorted(a.expire()) == sorted([on_a, kept])
        assert not (tmp_path / "a" / on_a).exists() and not (tmp_path / "a" / kept).exists()
        assert removed[-1] == f"{kept}/" and a.get(on_a) is None and a.get(kept) is None


def test_a_recording_deleted_by_another_process_is_gone_at_once_and_its_folder_goes_at_its_own_sweep(
        tmp_path: Path, index: IndexUnderTest) -> None:
    removed: list[str] = []
    database = tmp_path / "index.sqlite3" if index.url is None else None
    with RecordingStore(tmp_path / "a", database, retention_days=30, database_url=index.url,
                        remove_objects=removed.append) as a, \
            RecordingStore(tmp_path / "b", database, retention_days=30, database_url=index.url,
                           remove_objects=removed.append) as b:
        # Recorded by a before a reshard moved the guild to b, where the member asks to delete them.
        on_a = _finished(a)  # not uploaded (yet)
        kept = _finished(a)  # uploaded, with a keeping its local copy
        a.mark_uploaded(kept, f"{kept}/")
        other = _finished(a)
        assert b.delete(on_a) and b.delete(kept)
        assert removed == [f"{kept}/"]  # the objects at once, by whoever deletes
        for store in (a, b):
            assert store.get(on_a) is None and store.get(kept) is None
            assert [r.id for r in store.list(GUILD)] == [other]
        assert [r.id for r in a.pending_offloads(keep_local=False)] == [other]  # never uploaded again
        assert not b.delete(on_a)

        assert sorted(a.expire()) == sorted([on_a, kept])  # a's sweep, well within the retention
        assert not (tmp_path / "a" / on_a).exists() and not (tmp_path / "a" / kept).exists()
        assert a.expire() == [] and a.require(other).directory.is_dir()


def test_cached_copies_go_with_their_recording_whichever_process_deleted_or_expired_it(
        tmp_path: Path, index: IndexUnderTest) -> None:
    removed: list[str] = []
    database = tmp_path / "index.sqlite3" if index.url is None else None
    # A bot process (a) and a download front (f) sharing one index; the front caches
    # what it fetched from the object store for pages and derived formats.
    with RecordingStore(tmp_path / "a", database, retention_days=1, database_url=index.url,
                        remove_objects=removed.append) as a, \
            RecordingStore(tmp_path / "f", database, retention_days=1, database_url=index.url,
                           remove_objects=removed.append) as front:
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        ids = {}
        for name, ended in (("deleted", None), ("expired", two_days_ago), ("kept", None)):
            rid = _finished(a, ended)
            a.mark_uploaded(rid, f"{rid}/")
            a.remove_local_copy(rid, keep=("manifest.json",))
            (front.cache_dir / rid).mkdir(parents=True)
            (front.cache_dir / rid / "4444.wav").write_bytes(b"a track fetched for a ZIP")
            ids[name] = rid
        (front.cache_dir / "not-a-recording").mkdir()
        assert a.delete(ids["deleted"])

        assert sorted(front.sweep_cache()) == sorted([ids["deleted"], ids["expired"], "not-a-recording"])
        assert sorted(p.name for p in front.cache_dir.iterdir()) == [ids["kept"]]
        assert front.sweep_cache() == []
        # The bot's retention sweeps its own cache too: the expired recording's small files go.
        assert (a.cache_dir / ids["expired"]).is_dir()
        assert a.expire() == [ids["expired"]]
        assert sorted(p.name for p in a.cache_dir.iterdir()) == [ids["kept"]]
        # Deleted through another process (after a reshard): a's next sweep drops its copy.
        assert front.delete(ids["kept"])
        assert (a.cache_dir / ids["kept"]).is_dir()
        assert a.expire() == [] and list(a.cache_dir.iterdir()) == []
