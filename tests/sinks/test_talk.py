"""The talk meter: 20 ms blocks above the floor, whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest

from sinks.talk import BLOCK_FRAMES, TALK_PEAK, TalkMeter, talk_blocks


def _pcm(channels: int) -> np.ndarray:
    """Silence, a loud block, a block just under the floor, a block with one sample over it, a partial loud tail."""
    frames = np.zeros((5 * BLOCK_FRAMES + 100, channels), dtype=np.int16)
    frames[BLOCK_FRAMES:2 * BLOCK_FRAMES] = 3000
    frames[2 * BLOCK_FRAMES:3 * BLOCK_FRAMES] = -TALK_PEAK
    frames[3 * BLOCK_FRAMES + 17, channels - 1] = -TALK_PEAK - 1
    frames[5 * BLOCK_FRAMES + 50] = TALK_PEAK + 1
    return frames


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("chunk_frames", [7, 960, 1000, 100_000])
def test_counts_loud_blocks_however_the_audio_is_cut(channels: int, chunk_frames: int) -> None:
    data = _pcm(channels).tobytes()
    meter = TalkMeter(channels)
    step = chunk_frames * channels * 2
    for start in range(0, len(data), step):
        meter.feed(memoryview(data)[start:start + step])
    assert meter.talk_frames == 2 * BLOCK_FRAMES + 100


def test_silence_and_nothing_are_no_talk() -> None:
    meter = TalkMeter(1)
    assert meter.talk_frames == 0
    meter.feed(bytes(10 * BLOCK_FRAMES * 2 + 6))
    assert meter.talk_frames == 0


@pytest.mark.parametrize("channels", [1, 2])
def test_talk_blocks_say_which_blocks_the_meter_counts(channels: int) -> None:
    frames = _pcm(channels)
    assert talk_blocks(frames).tolist() == [False, True, False, True, False, True]
    assert talk_blocks(frames[:0]).tolist() == []
    assert talk_blocks(frames[:5 * BLOCK_FRAMES]).tolist() == [False, True, False, True, False]
