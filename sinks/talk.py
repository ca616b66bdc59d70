"""How much of a track is talk: 20 ms blocks whose peak is above a floor, counted in bulk.

The meter sees a track's samples as they leave the WAV writer's buffer, a
few seconds at a time, and counts them in one pass per chunk. Peak-checking
each decoded frame on its own cost two numpy reductions per packet: 9 % of
the time the GIL was held at 300 speakers (``python -m tests.bench load
--profile gil``), more than the rest of the track's bookkeeping.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .opus import FRAME_SAMPLES

__all__ = ["TalkMeter", "TALK_PEAK", "BLOCK_FRAMES", "talk_blocks"]

#: Peak below which a block counts as silence (about -50 dBFS).
TALK_PEAK: Final = 100
#: Frames per block: one Opus packet's worth (20 ms).
BLOCK_FRAMES: Final = FRAME_SAMPLES


class TalkMeter:
    """Counts the frames of 16-bit PCM (``channels`` interleaved) in blocks that are not silence.

    Blocks are aligned to the start of the track; a block split over two
    chunks is held until it is whole.
    """

    __slots__ = ("_block_bytes", "_carry", "_counted", "_channels")

    def __init__(self, channels: int) -> None:
        self._channels = channels
        self._block_bytes = BLOCK_FRAMES * channels * 2
        self._carry = b""
        self._counted = 0

    @property
    def talk_frames(self) -> int:
        """Frames fed so far in blocks with a sample beyond :data:`TALK_PEAK` (the last block may be partial)."""
        carry = np.frombuffer(self._carry, dtype="<i2")
        partial = len(carry) // self._channels if len(carry) and _loud(carry) else 0
        return self._counted + partial

    def feed(self, pcm: memoryview | bytes) -> None:
        """Count the next chunk of the track's little-endian int16 samples."""
        if self._carry:
            needed = self._block_bytes - len(self._carry)
            head, pcm = bytes(pcm[:needed]), pcm[needed:]
            self._carry += head
            if len(self._carry) < self._block_bytes:
                return
            self._counted += self._loud_frames(self._carry)
            self._carry = b""
        whole = len(pcm) - len(pcm) % self._block_bytes
        if whole:
            self._counted += self._loud_frames(pcm[:whole])
        if whole < len(pcm):
            self._carry = bytes(pcm[whole:])

    def _loud_frames(self, pcm: memoryview | bytes) -> int:
        """Frames in the loud blocks of ``pcm``, a whole number of blocks."""
        blocks = np.frombuffer(pcm, dtype="<i2").reshape(-1, BLOCK_FRAMES * self._channels)
        return int(_loud(blocks).sum()) * BLOCK_FRAMES


def talk_blocks(frames: np.ndarray) -> np.ndarray:
    """Which blocks of a track are talk, by the rule :class:`TalkMeter` counts with.

    ``frames`` is int16 PCM shaped ``(frames, channels)`` from the track's
    first frame on; the result has one bool per :data:`BLOCK_FRAMES` block,
    the last one possibly partial. Whoever reads a finished track with it
    finds the talk the meter counted while recording.
    """
    count, channels = frames.shape
    whole = count - count % BLOCK_FRAMES
    flags = _loud(frames[:whole].reshape(-1, BLOCK_FRAMES * channels))
    if whole < count:
        flags = np.append(flags, _loud(frames[whole:].reshape(-1)))
    return flags


def _loud(samples: np.ndarray) -> np.ndarray:
    """Whether each row of ``samples`` (or a 1-D run) has a sample beyond the floor."""
    return (samples.max(axis=-1) > TALK_PEAK) | (samples.min(axis=-1) < -TALK_PEAK)
