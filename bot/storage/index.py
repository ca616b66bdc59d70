"""The index of recordings: per-guild listing, download keys, opt-outs,
retention; in SQLite by default, or in PostgreSQL (see :mod:`bot.storage.backend`).

Every method is synchronous and thread-safe. Index operations take well under a
millisecond, but the ones that touch audio files (:meth:`RecordingStore.finish`,
``mark_interrupted``, ``delete``, ``expire``) do not: on the event loop, reach
the store through :class:`bot.storage.AsyncRecordingStore`, which runs each
call in a thread. Closing what a crash left open is :mod:`bot.recovery`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.storage.backend import IndexBackend, IndexConflict, IndexUnavailable, Transaction
from bot.storage.guild_settings import GuildSettingsTable
from bot.storage.identify_slots import IdentifySlots
from bot.storage.ids import is_recording_id, new_recording_id, new_secret, normalize_recording_id
from bot.storage.manifest import MANIFEST_NAME, Manifest, Note, Speaker
from bot.storage.markers import write_markers
from bot.storage.names import user_id_of_raw_track
from bot.storage.shard_leases import ShardLeases
from bot.storage.sqlite_index import DEFAULT_BUSY_SECONDS, SQLiteIndex

__all__ = ["IndexUnavailable", "Recording", "RecordingStore", "StorageError"]

_log = logging.getLogger(__name__)

#: A file each running recording keeps in its folder and gives up when it closes, so
#: the final manifest and index update still find room on a disk its tracks filled.
_RESERVE_NAME = ".reserve"
#: A file a recording's folder gets when its stop begins, so the next start never resumes a
#: recording somebody stopped: kept in the folder, as the index may be what the stop fails on.
_STOPPING_NAME = ".stopping"
_RESERVE_BYTES = 256 * 1024
#: The file in the recordings folder that keeps the folder's name (see :attr:`RecordingStore.owner`).
_OWNER_NAME = ".owner"

_COLUMNS = (
    "id, guild_id, guild_name, channel_id, channel_name, started_at, ended_at, status, secret, sample_rate, channels"
)
#: Every read of a recording brings its server's retention along, so expiry stays arithmetic,
#: and where its files are (see :meth:`RecordingStore.mark_uploaded`).
_SELECT = (f"SELECT {_COLUMNS}, (SELECT g.retention_days FROM guild_settings g "
           f"WHERE g.guild_id = recordings.guild_id), "
           f"(SELECT u.prefix FROM uploads u WHERE u.recording_id = recordings.id AND u.stored_at IS NOT NULL), "
           f"(SELECT u.local_removed FROM uploads u WHERE u.recording_id = recordings.id) FROM recordings")
#: The status of a recording deleted by a process other than the one whose folder holds it,
#: until that process deletes the folder (see :meth:`RecordingStore.delete`): gone for every reader.
_DELETED = "deleted"
#: The folder under ``recordings_dir`` that keeps small files of recordings whose own
#: folder is gone (the object store holds them): not a recording id, so never one's folder.
CACHE_DIR_NAME = ".object-cache"


class StorageError(Exception):
    """A storage operation that cannot be done (unknown id, wrong state)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Recording:
    """One row of the index. ``secret`` is the download key (hidden from repr)."""

    id: str
    guild_id: int
    guild_name: str
    channel_id: int
    channel_name: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    secret: str = dataclasses.field(repr=False)
    sample_rate: int
    channels: int
    directory: Path
    #: How long it is kept once it ended (its server's setting within the operator's);
    #: None: forever.
    retention: timedelta | None
    #: The object name prefix (``<id>/``) once every file is verified in the object
    #: store; None while the recording is only in its local folder.
    stored_prefix: str | None = None
    #: Whether the local folder was deleted after the verified upload.
    local_removed: bool = False

    @property
    def download_path(self) -> str:
        """``/r/<id>?key=<secret>``; prefix it with the public URL for a link."""
        return f"/r/{self.id}?key={self.secret}"


def _ts(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("datetimes given to the store must be timezone-aware")
    return moment.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class RecordingStore:
    """Recordings on disk under ``recordings_dir`` plus their index: in PostgreSQL
    when ``database_url`` is given, else in SQLite at ``database_path`` (by default
    ``index.sqlite3`` in ``recordings_dir``).

    ``retention_days`` None keeps recordings forever. ``index_busy_seconds`` is how long
    a write to the SQLite index waits for another process holding its lock (PostgreSQL
    does not use it). Opening migrates the index to the latest schema; raises
    :class:`IndexUnavailable` when it cannot.
    """

    def __init__(
        self,
        recordings_dir: Path,
        database_path: Path | None = None,
        retention_days: float | None = 30.0,
        *,
        database_url: str | None = None,
        remove_objects: Callable[[str], object] | None = None,
        index_busy_seconds: float = DEFAULT_BUSY_SECONDS,
    ) -> None:
        self.recordings_dir = Path(recordings_dir)
        #: Small files (manifest, page data, notes) of recordings whose folder is gone.
        self.cache_dir = self.recordings_dir / CACHE_DIR_NAME
        #: Deletes an object prefix from the object store (retention, /recordings delete);
        #: None when there is no object store.
        self._remove_objects = remove_objects
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.retention = None if retention_days is None else timedelta(days=retention_days)
        #: The SQLite file of the index; None when it is in PostgreSQL.
        self.database_path: Path | None = None
        self._index: IndexBackend
        if database_url:
            # Imported only here: psycopg is a quarter of a second of every start that
            # does not use it.
            from bot.storage.postgres_index import PostgresIndex

            self._index = PostgresIndex(database_url)
        else:
            self.database_path = Path(database_path) if database_path else self.recordings_dir / "index.sqlite3"
            self._index = SQLiteIndex(self.database_path, busy_seconds=index_busy_seconds)
        #: Each server's own settings (see :mod:`bot.storage.guild_settings`).
        self.guild_settings = GuildSettingsTable(self._index)
        #: Which process runs each gateway shard (see :mod:`bot.shard_claim`).
        self.shard_leases = ShardLeases(self._index)
        #: When each IDENTIFY rate-limit bucket may identify next (see :mod:`bot.identify_pacing`).
        self.identify_slots = IdentifySlots(self._index)
        #: Called with a recording's id, from the closing thread, after it was finished
        #: or marked interrupted (the uploader wakes up on it).
        self.closed_listeners: list[Callable[[str], None]] = []

    @functools.cached_property
    def owner(self) -> str:
        """The name of ``recordings_dir`` in the index: each recording carries the name of
        the folder its files are written in, and a start recovers only its own folder's
        (another process sharing the index records into its own folder, maybe on another
        machine). Made once and kept in the folder, so it survives restarts and a
        container made anew on the same volume, and no two folders share it."""
        path = self.recordings_dir / _OWNER_NAME
        if not path.exists():
            # Written whole under another name, then linked: a process starting beside
            # this one either sees no file or the whole name, never a part of it.
            draft = self.recordings_dir / f"{_OWNER_NAME}.{uuid.uuid4().hex}"
            draft.write_text(uuid.uuid4().hex, encoding="ascii")
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text(encoding="ascii").strip()

    def close(self) -> None:
        """Close the database connection."""
        self._index.close()

    def ping(self) -> bool:
        """Whether the index answers now (cheap; for a health check, in a thread)."""
        return self._index.ping()

    def __enter__(self) -> RecordingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recordings -------------------------------------------------------------

    def create(
        self,
        guild_id: int,
        guild_name: str,
        channel_id: int,
        channel_name: str,
        *,
        sample_rate: int = 48000,
        channels: int = 1,
        started_at: datetime | None = None,
    ) -> Recording:
        """Register a new recording (status ``recording``) and make its folder;
        the recording engine then writes ``<folder>/<user_id>.wav``."""
        started = started_at or _now()
        secret = new_secret()
        for _ in range(20):
            recording_id = new_recording_id()
            row = (recording_id, guild_id, guild_name, channel_id, channel_name, _ts(started),
                   secret, sample_rate, channels, self.owner)
            try:
                self._index.run(lambda tx, row=row: tx.execute(
                    f"INSERT INTO recordings ({_COLUMNS}, owner) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, 'recording', ?, ?, ?, ?)", row,
                ))
                break
            except IndexConflict:
                continue
        else:
            raise StorageError("could not find a free recording id")
        directory = self.recordings_dir / recording_id
        try:
            directory.mkdir(parents=True, exist_ok=False)
        except OSError:
            self._delete_row(recording_id)
            raise
        try:
            with open(directory / _RESERVE_NAME, "wb") as reserve:
                reserve.write(bytes(_RESERVE_BYTES))
            Manifest(recording_id, guild_id, guild_name, channel_id, channel_name, started,
                     sample_rate=sample_rate, channels=channels).write(directory)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            self._delete_row(recording_id)
            raise
        _log.info("recording %s created for guild %s", recording_id, guild_id)
        rec = self.get(recording_id)
        assert rec is not None
        return rec

    def get(self, recording_id: str) -> Recording | None:
        """The recording with this id (as a user typed it), or None."""
        rid = normalize_recording_id(recording_id)
        if not is_recording_id(rid):
            return None
        rows = self._index.run(lambda tx: tx.execute(f"{_SELECT} WHERE id = ? AND status != ?", (rid, _DELETED)))
        return self._row(rows[0]) if rows else None

    def list(self, guild_id: int) -> list[Recording]:
        """This guild's recordings, newest first. Never another guild's."""
        rows = self._index.run(lambda tx: tx.execute(
            f"{_SELECT} WHERE guild_id = ? AND status != ? ORDER BY started_at DESC, id", (guild_id, _DELETED),
        ))
        return [self._row(r) for r in rows]

    def note_speaker(self, recording_id: str, user_id: int, display_name: str) -> None:
        """Remember a speaker's display name as soon as they are heard, so a
        recording recovered after a crash still names its files."""
        self._index.run(lambda tx: tx.execute(
            "INSERT INTO speakers (recording_id, user_id, display_name) VALUES (?, ?, ?) "
            "ON CONFLICT (recording_id, user_id) DO UPDATE SET display_name = excluded.display_name",
            (recording_id, user_id, display_name),
        ))

    def add_note(self, recording_id: str, note: Note, *, limit: int) -> bool:
        """Keep ``note`` for the recording's manifest (in the index, so a crash keeps it
        too); False, and nothing kept, when the recording has ``limit`` notes already."""
        def add(tx: Transaction) -> bool:
            ((count,),) = tx.execute("SELECT COUNT(*) FROM notes WHERE recording_id = ?", (recording_id,))
            if count >= limit:
                return False
            tx.execute(
                "INSERT INTO notes (recording_id, at, author_id, author_name, text) VALUES (?, ?, ?, ?, ?)",
                (recording_id, note.at, note.author_id, note.author_name, note.text),
            )
            return True

        return self._index.run(add)

    def new_manifest(self, recording: Recording) -> Manifest:
        """A manifest for ``recording`` with every speaker and note so far; the caller
        fills in talk time, packets and losses, then passes it to :meth:`finish`."""
        order = self._index.insertion_order

        def read(tx: Transaction) -> tuple[list[tuple], list[tuple]]:
            return (
                tx.execute(f"SELECT user_id, display_name FROM speakers WHERE recording_id = ? ORDER BY {order}",
                           (recording.id,)),
                tx.execute(f"SELECT at, text, author_id, author_name FROM notes WHERE recording_id = ? "
                           f"ORDER BY at, {order}", (recording.id,)),
            )

        rows, notes = self._index.run(read)
        return Manifest(
            recording.id, recording.guild_id, recording.guild_name, recording.channel_id,
            recording.channel_name, recording.started_at, recording.ended_at, recording.status,
            recording.sample_rate, recording.channels, [Speaker(uid, name) for uid, name in rows],
            [Note(*row) for row in notes],
        )

    def read_manifest(self, recording: Recording) -> Manifest:
        """The recording's ``manifest.json`` (raises ManifestError/FileNotFoundError)."""
        return Manifest.read(recording.directory)

    def finish(self, recording_id: str, manifest: Manifest, *, ended_at: datetime | None = None) -> Manifest:
        """Close a recording normally: rename ``<user_id>.wav`` tracks after their
        speakers, write ``manifest.json`` (status ``finished``) and update the index.
        Returns the manifest as written (only speakers whose track exists)."""
        return self._close(recording_id, manifest, "finished", ended_at)

    def mark_interrupted(
        self, recording_id: str, manifest: Manifest | None = None, *, ended_at: datetime | None = None
    ) -> Manifest:
        """Close a recording that ended abnormally (voice lost, crash): like
        :meth:`finish` with status ``interrupted``; the manifest defaults to what
        the index knows."""
        if manifest is None:
            rec = self.require(recording_id)
            manifest = self.new_manifest(rec)
        return self._close(recording_id, manifest, "interrupted", ended_at)

    def delete(self, recording_id: str) -> bool:
        """Remove a recording's files (its objects first) and rows; False when there
        was none. :class:`StorageError` when the object store would not delete its
        objects: then nothing else went either, and a later call tries again.

        Another folder's recording that may still be on its process's disk (see
        :meth:`expire`) loses its objects, and is gone at once for every reader
        (status ``deleted``); its own process's next retention sweep deletes its
        folder and its row."""
        rec = self.get(recording_id)
        if rec is None:
            return False
        self._remove_files(rec)
        if self._on_another_disk(rec):
            self._index.run(lambda tx: tx.execute("UPDATE recordings SET status = ? WHERE id = ?",
                                                  (_DELETED, rec.id)))
            _log.info("recording %s deleted; the process that recorded it deletes its folder", rec.id)
            return True
        self._delete_row(rec.id)
        _log.info("recording %s deleted", rec.id)
        return True

    def _on_another_disk(self, rec: Recording) -> bool:
        """Whether ``rec`` is another folder's and its folder may still be there (not
        only objects left): then only that folder's process can delete it."""
        if rec.stored_prefix is not None and rec.local_removed:
            return False
        rows = self._index.run(lambda tx: tx.execute("SELECT owner FROM recordings WHERE id = ?", (rec.id,)))
        return bool(rows) and rows[0][0] is not None and rows[0][0] != self.owner

    def expires_at(self, recording: Recording) -> datetime | None:
        """When ``recording`` and its link expire: retention counts from its end, so
        a recording longer than the retention is not dead on arrival. None while it
        runs, or when recordings are kept forever."""
        if recording.retention is None or recording.ended_at is None:
            return None
        return recording.ended_at + recording.retention

    def is_expired(self, recording: Recording, now: datetime | None = None) -> bool:
        """True when ``recording`` is past retention (its link no longer works)."""
        expires = self.expires_at(recording)
        return expires is not None and expires <= (now or _now())

    def expire(self, now: datetime | None = None) -> list[str]:
        """Delete every recording that ended longer than its retention period ago
        (files and rows); recordings still in progress are kept. Returns the ids removed.

        Another folder's recording (another process's, sharing the index) is left to
        that process while its folder may still be there, on that process's disk: were
        its row deleted here, nothing would ever delete that folder. Once its upload is
        verified and its folder removed, only objects are left, and any process deletes
        them (so recordings of a process that is gone for good expire too). This
        folder's recordings another process deleted (:meth:`delete`) go now too."""
        moment = now or _now()
        # Each row's own retention (its server's, within the operator's) decides.
        rows = self._index.run(lambda tx: tx.execute(
            f"{_SELECT} WHERE ended_at IS NOT NULL AND status != 'recording' AND (owner = ? OR owner IS NULL "
            f"OR EXISTS (SELECT 1 FROM uploads u WHERE u.recording_id = recordings.id "
            f"AND u.stored_at IS NOT NULL AND u.local_removed = 1))", (self.owner,)))
        removed = []
        for row in rows:
            rec = self._row(row)
            if rec.status != _DELETED and not self.is_expired(rec, moment):
                continue
            try:
                self._remove_files(rec)
            except StorageError as exc:
                _log.warning("retention keeps %s until its objects can be deleted: %s", rec.id, exc)
                continue
            self._delete_row(rec.id)
            removed.append(rec.id)
        if removed:
            _log.info("retention removed %d recording(s)", len(removed))
        self.sweep_cache(moment)
        return removed

    def sweep_cache(self, now: datetime | None = None) -> list[str]:
        """Delete the cached copies (:attr:`cache_dir`) of every recording the index no
        longer hands out: deleted or expired, perhaps by another process sharing the
        index, which cannot reach this folder's cache. Returns the recording ids whose
        cache went. A download front has nothing else to sweep: this is its retention."""
        if not self.cache_dir.is_dir():
            return []
        moment = now or _now()
        removed = []
        for entry in sorted(self.cache_dir.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                continue
            rec = self.get(entry.name)
            if rec is not None and not self.is_expired(rec, moment):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        if removed:
            _log.info("cache sweep removed the copies of %d recording(s) no longer kept", len(removed))
        return removed

    def unfinished(self) -> list[Recording]:
        """Recordings of this folder (:attr:`owner`) still marked ``recording``, oldest
        first: after a crash, those the dead process left open (see :mod:`bot.recovery`).
        Another folder's are another process's to recover (it may be recording them now);
        those from before recordings named their folder were a lone bot's, so its own."""
        rows = self._index.run(lambda tx: tx.execute(
            f"{_SELECT} WHERE status = 'recording' AND (owner = ? OR owner IS NULL) ORDER BY started_at",
            (self.owner,),
        ))
        return [self._row(row) for row in rows]

    def suspend(self, recording_id: str, at: datetime) -> None:
        """Mark a running recording as paused for a restart of the bot at ``at``: its
        files are whole, its status stays ``recording``, and the next start resumes
        or finishes it (see :mod:`bot.resume`)."""
        self._index.run(lambda tx: tx.execute(
            "INSERT INTO suspensions (recording_id, suspended_at) VALUES (?, ?) "
            "ON CONFLICT (recording_id) DO UPDATE SET suspended_at = excluded.suspended_at",
            (recording_id, _ts(at)),
        ))

    def mark_stopping(self, recording: Recording) -> None:
        """Note in the recording's folder that its stop has begun (see :meth:`stop_begun`)."""
        (recording.directory / _STOPPING_NAME).touch()

    def stop_begun(self, recording: Recording) -> bool:
        """Whether a stop of the still-open ``recording`` had begun: if so it must be closed, not resumed."""
        return (recording.directory / _STOPPING_NAME).exists()

    def suspended_at(self, recording_id: str) -> datetime | None:
        """When the recording was paused for a restart; None when it was not (or it runs again)."""
        rows = self._index.run(lambda tx: tx.execute("SELECT suspended_at FROM suspensions WHERE recording_id = ?",
                                                     (recording_id,)))
        return _dt(rows[0][0]) if rows else None

    def resumed(self, recording_id: str) -> None:
        """The recording runs again: it is no longer paused."""
        self._index.run(lambda tx: tx.execute("DELETE FROM suspensions WHERE recording_id = ?", (recording_id,)))

    # -- the object store ------------------------------------------------------

    def pending_offloads(self, *, keep_local: bool) -> list[Recording]:
        """Ended recordings whose folder is here (with its manifest) that still wait
        for the object store: not yet verified there, or (unless ``keep_local``)
        verified but with the folder not yet removed. Oldest first."""
        removal = "" if keep_local else " OR COALESCE(u.local_removed, 0) = 0"
        rows = self._index.run(lambda tx: tx.execute(
            f"SELECT r.id FROM recordings r LEFT JOIN uploads u ON u.recording_id = r.id "
            f"WHERE r.status != 'recording' AND r.ended_at IS NOT NULL "
            f"AND (u.stored_at IS NULL{removal}) ORDER BY r.ended_at, r.id"))
        found = [self.get(rid) for (rid,) in rows]
        return [r for r in found if r is not None and (r.directory / MANIFEST_NAME).is_file()]

    def note_upload_failure(self, recording_id: str, error: str) -> None:
        """Count a failed upload of the recording and keep its one-line reason."""
        self._index.run(lambda tx: tx.execute(
            "INSERT INTO uploads (recording_id, attempts, last_error) VALUES (?, 1, ?) "
            "ON CONFLICT (recording_id) DO UPDATE SET attempts = uploads.attempts + 1, last_error = excluded.last_error",
            (recording_id, error[:500]),
        ))

    def upload_failures(self, recording_id: str) -> tuple[int, str | None]:
        """How many uploads of the recording failed, and the last one's reason."""
        rows = self._index.run(lambda tx: tx.execute(
            "SELECT attempts, last_error FROM uploads WHERE recording_id = ?", (recording_id,)))
        return (int(rows[0][0]), rows[0][1]) if rows else (0, None)

    def mark_uploaded(self, recording_id: str, prefix: str, *, at: datetime | None = None) -> None:
        """Every file of the recording is verified in the object store under ``prefix``:
        downloads may come from there, and the folder may go."""
        self._index.run(lambda tx: tx.execute(
            "INSERT INTO uploads (recording_id, prefix, stored_at) VALUES (?, ?, ?) "
            "ON CONFLICT (recording_id) DO UPDATE SET prefix = excluded.prefix, stored_at = excluded.stored_at, "
            "last_error = NULL",
            (recording_id, prefix, _ts(at or _now())),
        ))

    def cache_directory(self, recording: Recording) -> Path:
        """Where small files of ``recording`` are kept once its folder is gone."""
        return self.cache_dir / recording.id

    def remove_local_copy(self, recording_id: str, keep: tuple[str, ...] = ()) -> None:
        """Delete the folder of a recording the object store holds (verified), first
        copying the small files named in ``keep`` to its cache directory so its page
        needs no round trip to the store. :class:`StorageError` when the store does
        not hold it: a folder is never deleted before that."""
        rec = self.require(recording_id)
        if rec.stored_prefix is None:
            raise StorageError(f"recording {rec.id} is not in the object store; its folder stays")
        cache = self.cache_directory(rec)
        cache.mkdir(parents=True, exist_ok=True)
        for name in keep:
            source = rec.directory / name
            if source.is_file() and not source.is_symlink():
                shutil.copyfile(source, cache / name)
        self._index.run(lambda tx: tx.execute(
            "UPDATE uploads SET local_removed = 1 WHERE recording_id = ?", (rec.id,)))
        if rec.directory.parent == self.recordings_dir and rec.directory.is_dir():
            shutil.rmtree(rec.directory, ignore_errors=True)
        _log.info("recording %s: local folder removed, the object store holds it", rec.id)

    # -- opt-outs ---------------------------------------------------------------

    def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """Record whether ``user_id`` refuses to be recorded in ``guild_id``."""
        if opted_out:
            sql = "INSERT INTO opt_outs (guild_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
        else:
            sql = "DELETE FROM opt_outs WHERE guild_id = ? AND user_id = ?"
        self._index.run(lambda tx: tx.execute(sql, (guild_id, user_id)))

    def opted_out(self, guild_id: int) -> set[int]:
        """Users of ``guild_id`` who must not be recorded."""
        rows = self._index.run(lambda tx: tx.execute("SELECT user_id FROM opt_outs WHERE guild_id = ?", (guild_id,)))
        return {r[0] for r in rows}

    # -- internals --------------------------------------------------------------

    def _retention_of(self, guild_days: float | None) -> timedelta | None:
        """A server's retention within the operator's: never longer, and the operator's when it chose none."""
        if guild_days is None:
            return self.retention
        chosen = timedelta(days=guild_days)
        return chosen if self.retention is None else min(chosen, self.retention)

    def _row(self, row: tuple) -> Recording:
        (rid, gid, gname, cid, cname, started, ended, status, secret, rate, channels, guild_days, prefix,
         local_removed) = row
        return Recording(rid, gid, gname, cid, cname, _dt(started), _dt(ended), status, secret, rate, channels,
                         self.recordings_dir / rid, self._retention_of(guild_days), prefix, bool(local_removed))

    def require(self, recording_id: str) -> Recording:
        """The recording with this id; :class:`StorageError` when there is none."""
        rec = self.get(recording_id)
        if rec is None:
            raise StorageError(f"no recording {recording_id!r}")
        return rec

    def _close(self, recording_id: str, manifest: Manifest, status: str, ended_at: datetime | None) -> Manifest:
        rec = self.require(recording_id)
        if manifest.recording_id != rec.id:
            raise StorageError(f"manifest of {manifest.recording_id!r} given for recording {rec.id!r}")
        known = self.new_manifest(rec).speakers
        speakers = _finalize_tracks(rec.directory, manifest.speakers, known)
        ended = ended_at or manifest.ended_at or _now()
        final = dataclasses.replace(manifest, status=status, ended_at=ended, speakers=speakers)
        (rec.directory / _RESERVE_NAME).unlink(missing_ok=True)
        (rec.directory / _STOPPING_NAME).unlink(missing_ok=True)
        write_markers(rec.directory, final.notes)  # before the manifest, which marks the folder complete
        final.write(rec.directory)
        def close(tx: Transaction) -> None:
            tx.execute("UPDATE recordings SET status = ?, ended_at = ? WHERE id = ?", (status, _ts(ended), rec.id))
            tx.execute("DELETE FROM suspensions WHERE recording_id = ?", (rec.id,))

        self._index.run(close)
        _log.info("recording %s %s with %d track(s)", rec.id, status, len(speakers))
        for listener in self.closed_listeners:
            listener(rec.id)
        return final

    def _delete_row(self, recording_id: str) -> None:
        """Remove the recording's row (its speakers, notes and suspension go with it)."""
        self._index.run(lambda tx: tx.execute("DELETE FROM recordings WHERE id = ?", (recording_id,)))

    def _remove_files(self, rec: Recording) -> None:
        """The recording's objects (first: should that fail, nothing is lost track of), its cache and its folder."""
        if rec.stored_prefix is not None:
            if self._remove_objects is None:
                _log.warning("recording %s: its objects under %s stay in the object store (STORAGE_URL is not set)",
                             rec.id, rec.stored_prefix)
            else:
                try:
                    self._remove_objects(rec.stored_prefix)
                except Exception as exc:  # the object store's own errors are one line each
                    raise StorageError(f"recording {rec.id}: its objects were not deleted: {exc}") from None
        # The id was validated by get()/the schema, so this stays inside recordings_dir.
        shutil.rmtree(self.cache_directory(rec), ignore_errors=True)
        if rec.directory.parent == self.recordings_dir and rec.directory.is_dir():
            shutil.rmtree(rec.directory, ignore_errors=True)


def _finalize_tracks(directory: Path, speakers: list[Speaker], known: list[Speaker]) -> list[Speaker]:
    """Rename every ``<user_id>.wav`` after its speaker and return the speakers
    whose track exists: the given ones first, then any track nobody described
    (named from ``known`` or ``speaker``)."""
    by_id: dict[int, Speaker] = {}
    for s in speakers:
        if os.path.basename(s.file) != s.file or not s.file.endswith(".wav") or s.file.startswith("."):
            s = dataclasses.replace(s, file="")
        by_id.setdefault(s.user_id, s)
    names = {s.user_id: s.display_name for s in known}
    for path in sorted(directory.glob("*.wav")):
        uid = user_id_of_raw_track(path.name)
        if uid is None:
            continue
        if not _is_wav(path):
            _drop_unreadable(directory, path)
            continue
        speaker = by_id.setdefault(uid, Speaker(uid, names.get(uid, "speaker")))
        target = directory / speaker.file
        if target.exists():
            _log.warning("%s: %s already exists, keeping the raw track name", directory.name, speaker.file)
            speaker.file = path.name
            continue
        os.replace(path, target)
    return [s for s in by_id.values() if _is_wav(directory / s.file)]


#: Fewer bytes than the smallest WAV header: a file this short holds no audio at all.
_MIN_WAV_BYTES = 44


def _is_wav(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts like a WAV a reader can open:
    ``RIFF``/``RF64`` ... ``WAVE``, then a ``fmt `` chunk before the ``data`` chunk.

    Checked here, without the recording engine (storage does not import it), so
    the manifest never lists a track that the page, the mixdown or a player
    cannot read (a full disk leaves a file created but without its header).
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return False
            pos, has_fmt = 12, False
            while pos + 8 <= size:
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return False
                cid, length = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"data":
                    return has_fmt
                has_fmt = has_fmt or (cid == b"fmt " and length >= 16)
                pos += 8 + length + (length & 1)
            return False
    except OSError:
        return False


def _drop_unreadable(directory: Path, path: Path) -> None:
    """Deal with a track that is no WAV: removed when it is empty or the cut-off start of
    a header (it holds no audio: nothing is lost), else left under its raw name, out of
    the manifest (whatever it is, it is not ours to delete)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_MIN_WAV_BYTES)
        size = len(head)
        if size < _MIN_WAV_BYTES and (b"RIFF".startswith(head[:4]) or b"RF64".startswith(head[:4])):
            path.unlink()
            _log.warning("%s: removed %s, a track without a WAV header (%d bytes)", directory.name, path.name, size)
        else:
            _log.warning("%s: %s is not a readable WAV; kept, but not listed", directory.name, path.name)
    except OSError as exc:
        _log.warning("%s: could not remove the unreadable %s: %s", directory.name, path.name,
                     os.strerror(exc.errno or 0))
