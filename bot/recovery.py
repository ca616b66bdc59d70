"""Closing recordings that a crash or a failed stop left open.

Recovery needs both sides of a recording: the index, which says what was
running and who spoke (:mod:`bot.storage`), and the engine's WAV repair,
which makes a killed process's tracks readable (:func:`sinks.repair_directory`).
It lives here, above both, so that storage never imports the engine.

Each function does file work and blocks: run it in a thread
(``asyncio.to_thread``) from the event loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.storage import Manifest, ManifestError, Recording, RecordingStore
from sinks import repair_directory

__all__ = ["recover", "close_unfinished"]

_log = logging.getLogger(__name__)


def recover(store: RecordingStore) -> list[Recording]:
    """Close every recording a crashed process left marked ``recording``.

    Each one's WAV headers are repaired, its tracks named as far as the index
    knows, its manifest written and its status set to ``interrupted``. One
    whose stop got as far as writing its ``finished`` manifest (only the index
    update failed) is finished with that manifest instead. Call once at
    start-up, before any new recording begins. Returns them so the bot can tell
    their guilds.
    """
    recovered = []
    for rec in store.unfinished():
        stopped = _finished_manifest(rec)
        if stopped is not None:
            store.finish(rec.id, stopped, ended_at=stopped.ended_at)
            _log.warning("recording %s had stopped, but its index entry was not updated: finished now", rec.id)
        else:
            rec.directory.mkdir(parents=True, exist_ok=True)
            repair_directory(rec.directory)
            tracks = list(rec.directory.glob("*.wav"))
            last_write = max((p.stat().st_mtime for p in tracks), default=None)
            ended = datetime.fromtimestamp(last_write, UTC) if last_write is not None else rec.started_at
            # Tracks that are no WAV (a file created on a full disk, never given its
            # header) are dropped here, by the store: they hold no audio to recover.
            final = store.mark_interrupted(rec.id, ended_at=ended)
            _log.warning("recording %s was interrupted by a crash; recovered %d track(s)", rec.id,
                         len(final.speakers))
        closed = store.get(rec.id)
        assert closed is not None
        recovered.append(closed)
    return recovered


def close_unfinished(store: RecordingStore, recording_id: str, manifest: Manifest | None) -> Manifest:
    """Close a recording whose stop failed part-way (the index locked by another
    process, say), now that it may work.

    It is finished with ``manifest`` when the stop got as far as describing it,
    else repaired like a crash (:func:`recover`) and marked ``interrupted``.
    Safe to repeat after a failure of its own. Raises
    :class:`bot.storage.StorageError` when the recording is gone.
    """
    if manifest is not None:
        return store.finish(recording_id, manifest)
    rec = store.require(recording_id)
    repair_directory(rec.directory)
    return store.mark_interrupted(rec.id)


def _finished_manifest(rec: Recording) -> Manifest | None:
    """The ``finished`` manifest a stop of ``rec`` wrote before its index update failed, if any."""
    try:
        manifest = Manifest.read(rec.directory)
    except (OSError, ManifestError):  # none (a crash), or unreadable: repair as a crash
        return None
    return manifest if manifest.status == "finished" and manifest.recording_id == rec.id else None
