"""Who spoke when: per-track voice activity in 100 ms windows, computed once
from the WAV files and cached next to them as ``activity.json``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["ACTIVITY_NAME", "WINDOW_SECONDS", "TrackActivity", "load_activity", "track_activity"]

_log = logging.getLogger(__name__)

ACTIVITY_NAME = "activity.json"
WINDOW_SECONDS = 0.1
# RMS above about -50 dBFS counts as sound: far above dither/PLC noise, far below speech.
_THRESHOLD = 32768 * 10 ** (-50 / 20)
_WINDOWS_PER_BLOCK = 100  # ten seconds per read keeps memory small on long tracks


@dataclasses.dataclass(frozen=True, slots=True)
class TrackActivity:
    """Active spans of one track as ``(first_window, end_window)`` pairs, end
    exclusive; ``windows`` is the track's length in windows."""

    windows: int
    spans: tuple[tuple[int, int], ...]

    @property
    def talk_seconds(self) -> float:
        """Seconds of sound in the track."""
        return sum(e - s for s, e in self.spans) * WINDOW_SECONDS


def track_activity(path: Path) -> TrackActivity:
    """Compute the activity of one WAV file, reading it ten seconds at a time."""
    loud: list[np.ndarray] = []
    with sf.SoundFile(str(path)) as f:
        window = max(1, round(f.samplerate * WINDOW_SECONDS))
        for block in f.blocks(blocksize=window * _WINDOWS_PER_BLOCK, dtype="int16", always_2d=True):
            n = -(-len(block) // window)
            padded = np.zeros((n * window, block.shape[1]), dtype=np.float32)
            padded[: len(block)] = block
            power = np.mean(np.square(padded).reshape(n, -1), axis=1)
            loud.append(power > _THRESHOLD**2)
    flags = np.concatenate(loud) if loud else np.zeros(0, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flags, [False])).astype(np.int8)))
    spans = tuple((int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True))
    return TrackActivity(len(flags), spans)


def load_activity(directory: Path, files: list[str]) -> dict[str, TrackActivity]:
    """Activity of each named track in ``directory``, from the cache when the
    file is unchanged (same size and mtime), else computed and cached. Blocking:
    run it in a thread."""
    cache_path = directory / ACTIVITY_NAME
    try:
        cached = json.loads(cache_path.read_text(encoding="utf-8"))["tracks"]
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
            activity = TrackActivity(int(entry["windows"]), tuple((int(s), int(e)) for s, e in entry["spans"]))
        else:
            activity = track_activity(directory / name)
            changed = True
        result[name] = activity
        fresh[name] = {"stamp": stamp, "windows": activity.windows, "spans": [list(s) for s in activity.spans]}
    if changed:
        tmp = directory / (ACTIVITY_NAME + ".tmp")
        tmp.write_text(json.dumps({"window_seconds": WINDOW_SECONDS, "tracks": fresh}), encoding="utf-8")
        os.replace(tmp, cache_path)
        _log.debug("%s: activity computed for %d track(s)", directory.name, len(files))
    return result
