"""RTP arithmetic and the stream timeline: anchoring, jitter, drift over an hour, wraps."""

from __future__ import annotations

import random

import pytest

from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE
from sinks.packet import VoicePacket, seq_delta, ts_delta
from sinks.timeline import DEFAULT_TOLERANCE, StreamTimeline
from tests.sinks.streams import ALIGNMENT_LIMIT

MS = SAMPLE_RATE // 1000  # samples per millisecond


def test_deltas_wrap_both_ways() -> None:
    assert seq_delta(3, 65533) == 6
    assert seq_delta(65533, 3) == -6
    assert seq_delta(100, 100) == 0
    assert ts_delta(500, 0xFFFF_FF00) == 756
    assert ts_delta(0xFFFF_FF00, 500) == -756


def test_voice_packet_is_slotted() -> None:
    packet = VoicePacket(sequence=1, timestamp=2, opus=b"x", received_at=0.5, ssrc=7)
    assert not hasattr(packet, "__dict__")
    with pytest.raises(AttributeError):
        packet.color = "red"  # type: ignore[attr-defined]


def test_late_first_packet_is_corrected_by_the_first_faster_one() -> None:
    # The first packet met 60 ms of extra delay; the second met none.
    timeline = StreamTimeline(1000, arrival=60 * MS)
    assert timeline.position(1000) == 60 * MS
    assert timeline.observe(1000 + 960, 960) == -60 * MS
    assert timeline.position(1000) == 0


def test_before_placement_any_faster_packet_moves_the_anchor() -> None:
    # 9 ms late is within the tolerance: once placing, it stands; before, it is corrected.
    placing = StreamTimeline(1000, arrival=9 * MS)
    assert placing.observe(1000 + 960, 960) == 0
    settling = StreamTimeline(1000, arrival=9 * MS)
    assert settling.settle(1000 + 960, 960) == -9 * MS
    assert settling.position(1000) == 0
    # Slower packets do not move it back.
    assert settling.settle(1000 + 1920, 1920 + 5 * MS) == 0


def test_jitter_does_not_move_an_anchor_set_by_a_fast_packet() -> None:
    rng = random.Random(1)
    timeline = StreamTimeline(0, arrival=0)
    for k in range(1, 3000):
        jitter = int(rng.expovariate(1 / (8 * MS)))
        timeline.observe(k * FRAME_SAMPLES, k * FRAME_SAMPLES + jitter)
    assert timeline.shifts == 0
    assert timeline.position(0) == 0


@pytest.mark.parametrize("ppm", [-300, -50, 50, 300])
def test_no_drift_over_an_hour(ppm: int) -> None:
    """A sender clock off by ``ppm``, network delay 30 ms + jitter, RTP wrapping: error stays under 20 ms."""
    rng = random.Random(ppm)
    base = 30 * MS
    ts0 = 0xFFFF_FFFF - 5_000_000  # wraps within the first two minutes
    frames = 3600 * 50
    first_delay = base + 25 * MS
    timeline = StreamTimeline(ts0, arrival=first_delay)
    worst = 0
    for k in range(1, frames):
        sent = k * FRAME_SAMPLES * (1 + ppm / 1e6)  # when the frame was captured, on our clock
        arrival = round(sent + base + min(rng.expovariate(1 / (6 * MS)), 200 * MS))
        ts = (ts0 + k * FRAME_SAMPLES) & 0xFFFF_FFFF
        timeline.observe(ts, arrival)
        timeline.rebase(ts)  # as the track does at every commit
        error = timeline.position(ts) - (sent + base)
        if k > 50:  # a second in: the late first packet has been corrected
            worst = max(worst, abs(error))
    assert worst <= DEFAULT_TOLERANCE + 2 * MS < ALIGNMENT_LIMIT
    # Uncorrected, the drift would have reached ppm * 3.6 ms (180-1080 ms).
    assert timeline.shifts > 0


def test_restart_anchors_a_new_burst_at_its_arrival() -> None:
    timeline = StreamTimeline(0, arrival=0)
    timeline.observe(960, 960)
    timeline.restart(1920, arrival=48_000)
    assert timeline.position(1920) == 48_000
    assert timeline.position(1920 + 960) == 48_960
