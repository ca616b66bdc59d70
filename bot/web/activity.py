"""Who spoke when: per-track talk in the engine's 20 ms blocks, computed once
from the WAV files and cached next to them as ``activity.json``.

A block is talk by the same rule the engine counts talk seconds with
(:func:`sinks.talk.talk_blocks`), so the timeline's bars add up to the talk
time shown beside them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from sinks.opus import SAMPLE_RATE
from sinks.talk import BLOCK_FRAMES, talk_blocks

__all__ = ["ACTIVITY_NAME", "WINDOW_SECONDS", "TrackActivity", "load_activity", "stored_activity", "track_activity"]

_log = logging.getLogger(__name__)

ACTIVITY_NAME = "activity.json"
#: One window is one of the engine's talk blocks (tracks are written at its sample rate).
WINDOW_SECONDS = BLOCK_FRAMES / SAMPLE_RATE
_BLOCKS_PER_READ = 500  # ten seconds per read keeps memory small on long tracks


@dataclasses.dataclass(frozen=True, slots=True)
class TrackActivity:
    """Talk spans of one track as ``(first_window, end_window)`` pairs, end
    exclusive; ``frames`` is the track's length (its last window may be partial)."""

    frames: int
    spans: tuple[tuple[int, int], ...]

    @property
    def windows(self) -> int:
        """The track's length in windows, a partial last one included."""
        return -(-self.frames // BLOCK_FRAMES)

    @property
    def talk_seconds(self) -> float:
        """Seconds of talk, counted as the engine counts them (a partial last window by its frames)."""
        frames = sum(min(end * BLOCK_FRAMES, self.frames) - start * BLOCK_FRAMES for start, end in self.spans)
        return frames / SAMPLE_RATE


def track_activity(path: Path) -> TrackActivity:
    """Compute the activity of one WAV file, reading it ten seconds at a time."""
    talk: list[np.ndarray] = []
    frames = 0
    with sf.SoundFile(str(path)) as f:
        for block in f.blocks(blocksize=BLOCK_FRAMES * _BLOCKS_PER_READ, dtype="int16", always_2d=True):
            talk.append(talk_blocks(block))
            frames += len(block)
    flags = np.concatenate(talk) if talk else np.zeros(0, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flags, [False])).astype(np.int8)))
    spans = tuple((int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True))
    return TrackActivity(frames, spans)


def load_activity(directory: Path, files: list[str]) -> dict[str, TrackActivity]:
    """Activity of each named track in ``directory``, from the cache when the
    file is unchanged (same size and mtime) and the cache counts in the same
    windows, else computed and cached. Blocking: run it in a thread."""
    cache_path = directory / ACTIVITY_NAME
    try:
        data = json.loads(cache_path.read_text(encoding="utf-8"))
        cached = data["tracks"] if data["window_frames"] == BLOCK_FRAMES else {}
    except (OSError, ValueError, KeyError, TypeError):
        cached = {}
    result: dict[str, TrackActivity] = {}
    fresh: dict[str, dict] = {}
    changed = False
    for name in files:
        st = (directory / name).stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = cached.get(name)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            activity = TrackActivity(int(entry["frames"]), tuple((int(s), int(e)) for s, e in entry["spans"]))
        else:
            try:
                activity = track_activity(directory / name)
            except (sf.LibsndfileError, RuntimeError) as exc:
                # Not a WAV (a file a full disk left without its header): the page leaves
                # it out rather than failing for every other track.
                _log.warning("%s: %s is not a readable WAV (%s); left off the page", directory.name, name,
                             type(exc).__name__)
                continue
            changed = True
        result[name] = activity
        fresh[name] = {"stamp": stamp, "frames": activity.frames, "spans": [list(s) for s in activity.spans]}
    if changed:
        tmp = directory / (ACTIVITY_NAME + ".tmp")
        try:
            tmp.write_text(json.dumps({"window_frames": BLOCK_FRAMES, "tracks": fresh}), encoding="utf-8")
            os.replace(tmp, cache_path)
        except OSError as exc:
            # Only a cache: on a full disk the page is still served, computed afresh next time.
            tmp.unlink(missing_ok=True)
            _log.warning("%s: activity cache not written: %s", directory.name, os.strerror(exc.errno or 0))
        _log.debug("%s: activity computed for %d track(s)", directory.name, len(files))
    return result


def stored_activity(directory: Path, files: list[str]) -> dict[str, TrackActivity]:
    """Activity of each named track as the cache in ``directory`` has it, without
    the tracks (a recording in the object store: its ``activity.json`` was made
    from the uploaded tracks, which never change). Tracks it lacks are left out."""
    try:
        data = json.loads((directory / ACTIVITY_NAME).read_text(encoding="utf-8"))
        cached = data["tracks"] if data["window_frames"] == BLOCK_FRAMES else {}
        return {name: TrackActivity(int(cached[name]["frames"]),
                                    tuple((int(s), int(e)) for s, e in cached[name]["spans"]))
                for name in files if isinstance(cached.get(name), dict)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _log.warning("%s: no usable activity cache (%s)", directory.name, type(exc).__name__)
        return {}
