"""Moving finished recordings from the local folder to the object store.

A recording is recorded to local disk (appends and crash repair need a file);
once it is closed (a stop, crash recovery, a restart that does not resume it)
the :class:`Offloader` makes sure its page data (``activity.json``) is in the
folder, uploads the folder with :func:`bot.objects.upload_recording` (every
file verified, the manifest last), records the verified prefix in the index and
only then, unless ``KEEP_LOCAL_COPY``, deletes the folder, keeping its small
files in the store's cache directory for the page.

What it has done and has yet to do is kept as :class:`UploadStats` (read by
``/metrics`` through :mod:`bot.upload_metrics`): the recordings pending, those
uploaded and their bytes, and failed tries by :data:`FAILURE_REASONS`.

The work list is the index itself (:meth:`RecordingStore.pending_offloads`), so
uploads a restart interrupted are picked up at the next start, and a failed one
is tried again with a growing wait, forever, while the others go on. Each
upload runs in a daemon thread of its own: the event loop never waits for the
store, and a shutdown never waits for an upload (it resumes at the next start;
nothing local goes before the store holds it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import bot.objects
from bot.objects import ChecksumMismatch, ObjectStoreError, StoreUnavailable, UploadFailed
from bot.storage import (
    MANIFEST_NAME,
    MARKER_FILES,
    IndexUnavailable,
    Manifest,
    ManifestError,
    Recording,
    RecordingStore,
    StorageError,
)
from bot.web.activity import ACTIVITY_NAME, load_activity

if TYPE_CHECKING:
    from bot.objects import ObjectStore, UploadResult

__all__ = ["FAILURE_REASONS", "Offloader", "UploadStats"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds before the first retry of a failed upload; each failure doubles it up to the maximum.
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 600.0
#: Seconds between looks at the index when nothing wakes the uploader (recordings another
#: path closed without telling, a database that was away).
SCAN_SECONDS = 60.0
#: What the folder's small files are: kept in the cache when the folder goes, so the page needs no store.
_SMALL_FILES = (MANIFEST_NAME, ACTIVITY_NAME, *MARKER_FILES)
#: Why a try failed: the store kept failing for a request's whole retry budget (refused,
#: timed out, 5xx), the store answered an error, a stored object's checksum was not the
#: file's, the index was away, the local folder could not be read, anything else.
FAILURE_REASONS = ("store_unavailable", "store_error", "checksum", "index", "local_files", "other")


@dataclasses.dataclass(frozen=True, slots=True)
class UploadStats:
    """What the uploader of this process has done and has yet to do.

    ``pending``: closed recordings waiting for their upload (or for their folder's
    removal after it), the one being uploaded included; ``uploaded``: recordings
    this process verified in the store, with ``bytes_sent`` bytes sent for them;
    ``failures``: failed tries, by reason (every one of :data:`FAILURE_REASONS`).
    """

    pending: int
    uploaded: int
    bytes_sent: int
    failures: Mapping[str, int]


def _failure_reason(exc: BaseException) -> str:
    """Which of :data:`FAILURE_REASONS` a failed try was."""
    if isinstance(exc, ChecksumMismatch):
        return "checksum"
    if isinstance(exc, (IndexUnavailable, StorageError)):
        return "index"
    # upload_recording names the recording in an UploadFailed and keeps the store's error as its cause;
    # without a cause, what failed was the folder (an unreadable manifest or file).
    cause = exc.__cause__ if isinstance(exc, UploadFailed) else exc
    if isinstance(cause, StoreUnavailable):
        return "store_unavailable"
    if isinstance(cause, ObjectStoreError):
        return "store_error"
    if isinstance(exc, (UploadFailed, ManifestError, OSError)):
        return "local_files"
    return "other"


async def _in_daemon_thread(work: Callable[[], T], name: str) -> T:
    """``work()`` in a daemon thread (one that never holds up the process's exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def hand_over(outcome: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:  # the loop closed meanwhile (shutdown): nobody waits any more
            pass

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task, which decides
            hand_over(functools.partial(future.set_exception, exc))
        else:
            hand_over(functools.partial(future.set_result, result))

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


class Offloader:
    """Uploads every closed recording of ``store`` to ``objects``; see the module docstring."""

    def __init__(self, store: RecordingStore, objects: ObjectStore, *, keep_local: bool,
                 first_retry: float = FIRST_RETRY_SECONDS, max_retry: float = MAX_RETRY_SECONDS,
                 scan_seconds: float = SCAN_SECONDS) -> None:
        self._store = store
        self._objects = objects
        self._keep_local = keep_local
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._scan_seconds = scan_seconds
        #: Recording id -> (failures in a row, monotonic time of the next try).
        self._backoff: dict[str, tuple[int, float]] = {}
        #: Ids of the recordings waiting, as of the last look at the index, less those done since.
        self._pending: set[str] = set()
        self._uploaded = 0
        self._bytes_sent = 0
        self._failures: Counter[str] = Counter({reason: 0 for reason in FAILURE_REASONS})
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin on the running loop: pending uploads first, then whatever closes."""
        self._loop = asyncio.get_running_loop()
        self._store.closed_listeners.append(self.kick)
        self._task = asyncio.create_task(self._run(), name="offload")

    def stats(self) -> UploadStats:
        """A snapshot of what was done and is left (on the event loop, which owns the figures)."""
        return UploadStats(len(self._pending), self._uploaded, self._bytes_sent, dict(self._failures))

    def kick(self, _recording_id: str | None = None) -> None:
        """Look at the index now (thread-safe: the store calls it from its closing thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def close(self) -> None:
        """Stop; an upload under way is left to its thread and resumes at the next start."""
        if self.kick in self._store.closed_listeners:
            self._store.closed_listeners.remove(self.kick)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                pending = await asyncio.to_thread(self._store.pending_offloads, keep_local=self._keep_local)
            except IndexUnavailable as exc:
                _log.warning("uploads wait for the index: %s", exc)
                pending = []  # what was pending still is (self._pending stays)
            except Exception:  # the uploader must outlive any one bad look at the index
                _log.exception("uploads: the index's list of pending uploads failed")
                pending = []
            else:
                self._pending = {r.id for r in pending}
            now = time.monotonic()
            due = [r for r in pending if self._backoff.get(r.id, (0, 0.0))[1] <= now]
            for rec in due:
                await self._offload(rec)
            waits = [t - time.monotonic() for _n, t in self._backoff.values()]
            timeout = min([self._scan_seconds, *waits]) if not due else 0.0
            if timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass

    async def _offload(self, rec: Recording) -> None:
        try:
            result = await _in_daemon_thread(lambda: self._move(rec), f"upload-{rec.id}")
        except Exception as exc:  # any failure of one recording is retried, never the end of the others
            if not isinstance(exc, (ObjectStoreError, IndexUnavailable, StorageError, ManifestError, OSError)):
                _log.exception("recording %s: unexpected upload failure", rec.id)
            self._failures[_failure_reason(exc)] += 1
            failures = self._backoff.get(rec.id, (0, 0.0))[0] + 1
            delay = min(self._first_retry * 2 ** (failures - 1), self._max_retry)
            self._backoff[rec.id] = (failures, time.monotonic() + delay)
            _log.warning("recording %s: upload failed (try %d), trying again in %.0f s: %s",
                         rec.id, failures, delay, exc)
            try:
                await asyncio.to_thread(self._store.note_upload_failure, rec.id, str(exc))
            except IndexUnavailable:
                pass  # counted in memory; the index learns of the next one
        else:
            self._backoff.pop(rec.id, None)
            self._pending.discard(rec.id)
            if result is not None:
                self._uploaded += 1
                self._bytes_sent += result.bytes_sent

    def _move(self, rec: Recording) -> UploadResult | None:
        """Upload, record, and (unless keeping local copies) remove the folder; the
        upload's result, or None when the store held it already or the recording was
        deleted meanwhile. Blocking."""
        result = None
        if rec.stored_prefix is None:
            manifest = Manifest.read(rec.directory)
            tracks = [s.file for s in manifest.speakers if (rec.directory / s.file).is_file()]
            load_activity(rec.directory, tracks)  # the page's data goes up with the tracks
            result = bot.objects.upload_recording(rec.directory, self._objects, rec.id)
            if self._store.get(rec.id) is None:  # deleted meanwhile: its objects go too
                self._objects.delete_prefix(result.prefix)
                return None
            self._store.mark_uploaded(rec.id, result.prefix)
            _log.info("recording %s is in the object store (%d bytes sent)", rec.id, result.bytes_sent)
        if not self._keep_local:
            self._store.remove_local_copy(rec.id, keep=_SMALL_FILES)
        return result
