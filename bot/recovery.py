"""Closing recordings that a crash, a restart or a failed stop left open.

Recovery needs both sides of a recording: the index, which says what was
running and who spoke (:mod:`bot.storage`), and the engine's WAV repair,
which makes a killed process's tracks readable (:func:`sinks.repair_directory`).
It lives here, above both, so that storage never imports the engine.

At start-up :func:`examine` finishes what had stopped and makes the tracks of
every other open recording whole; :mod:`bot.resume` then continues each one it
can, and :func:`close_interrupted` closes the rest.

Each function does file work and blocks: run it in a thread
(``asyncio.to_thread``) from the event loop.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.storage import Manifest, ManifestError, Recording, RecordingStore
from sinks import repair_directory
from sinks.opus import SAMPLE_RATE
from sinks.talk import TalkMeter
from sinks.wavfile import HEADER_SIZE

__all__ = ["Interrupted", "examine", "close_interrupted", "close_unfinished"]

_log = logging.getLogger(__name__)


#: Bytes of a track read at a time when its talk time is counted.
_READ_CHUNK = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Interrupted:
    """A recording the last process left running, its tracks made whole."""

    recording: Recording
    #: When a shutdown paused it for a restart; None when the process died (a crash).
    suspended_at: datetime | None
    #: Where its audio ends: the start plus its longest track.
    recorded_until: datetime
    #: When the last audio reached the disk (a crashed recording's end).
    last_write: datetime
    #: Talk seconds of each track so far (``<user_id>.wav``), counted as the engine counts them.
    talk_seconds: dict[int, float]
    #: Whether its stop had begun (then it is closed, never resumed).
    stop_begun: bool


def examine(store: RecordingStore) -> tuple[list[Recording], list[Interrupted]]:
    """At start-up, before any new recording begins: finish each recording whose stop
    got as far as writing its ``finished`` manifest (only the index update failed),
    and repair the tracks of every other recording still marked ``recording``.

    Returns the recordings finished, and the others, still open, for
    :mod:`bot.resume` to continue or :func:`close_interrupted` to close.
    """
    finished, open_ = [], []
    for rec in store.unfinished():
        stopped = _finished_manifest(rec)
        if stopped is not None:
            store.finish(rec.id, stopped, ended_at=stopped.ended_at)
            _log.warning("recording %s had stopped, but its index entry was not updated: finished now", rec.id)
            closed = store.get(rec.id)
            assert closed is not None
            finished.append(closed)
            continue
        rec.directory.mkdir(parents=True, exist_ok=True)
        reports = repair_directory(rec.directory)
        longest = max((r.frames for r in reports), default=0)
        tracks = list(rec.directory.glob("*.wav"))
        last_write = max((p.stat().st_mtime for p in tracks), default=None)
        open_.append(Interrupted(
            rec, store.suspended_at(rec.id),
            rec.started_at + timedelta(seconds=longest / SAMPLE_RATE),
            datetime.fromtimestamp(last_write, UTC) if last_write is not None else rec.started_at,
            {int(r.path.stem): _talk_seconds(r.path, rec.channels) for r in reports if r.path.stem.isdigit()},
            store.stop_begun(rec),
        ))
    return finished, open_


def close_interrupted(store: RecordingStore, interrupted: Interrupted) -> Recording:
    """Close a recording :func:`examine` left open that is not resumed: one a shutdown
    suspended is ``finished`` where its audio ends; one a crash cut short is
    ``interrupted`` (its tracks named as far as the index knows)."""
    rec = interrupted.recording
    if interrupted.suspended_at is not None:
        manifest = store.new_manifest(rec)
        for speaker in manifest.speakers:
            speaker.talk_seconds = round(interrupted.talk_seconds.get(speaker.user_id, 0.0), 2)
        store.finish(rec.id, manifest, ended_at=interrupted.recorded_until)
        _log.info("recording %s, suspended for a restart, is finished (not resumed)", rec.id)
    else:
        # Tracks that are no WAV (a file created on a full disk, never given its
        # header) are dropped here, by the store: they hold no audio to recover.
        final = store.mark_interrupted(rec.id, ended_at=interrupted.last_write)
        _log.warning("recording %s was interrupted by a crash; recovered %d track(s)", rec.id, len(final.speakers))
    closed = store.get(rec.id)
    assert closed is not None
    return closed


def close_unfinished(store: RecordingStore, recording_id: str) -> Manifest:
    """Close a recording whose stop failed before its tracks were closed, now that
    the index may take it: repaired like a crash (:func:`examine`) and marked
    ``interrupted``. (A stop that closed them is finished by the session itself:
    :meth:`bot.session.RecordingSession.finish_in_index`.)

    Safe to repeat after a failure of its own. Raises
    :class:`bot.storage.StorageError` when the recording is gone.
    """
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


def _talk_seconds(track: Path, channels: int) -> float:
    """Talk time of a whole track, by the rule the engine's meter counts with while recording."""
    meter = TalkMeter(channels)
    with open(track, "rb") as f:
        f.seek(HEADER_SIZE)
        while chunk := f.read(_READ_CHUNK):
            meter.feed(chunk)
    return meter.talk_frames / SAMPLE_RATE
