"""Arrival times from a clock step: the engine never trusts one later than its own clock.

The receive layer turns the kernel's wall-clock stamps into monotonic time; a
wall-clock step (NTP, a VM resume, ``date -s``) between a datagram's arrival
and that conversion hands the sink arrival times seconds in the future. The
track used to re-anchor there: the speaker lost that many seconds and the
track grew by them.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import soundfile as sf

from sinks import AudioSink, VoicePacket
from sinks.opus import SAMPLE_RATE
from tests.sinks.streams import FakeClock, decode_offline, encode, packets, tone

#: How far the step moved the stamps: past the tracks' 10 s trust in RTP time.
STEP = 15.0
DEADLINE = 30.0


def _wait_handled(sink: AudioSink) -> None:
    """Until the sink's workers took every packet written so far."""
    deadline = time.monotonic() + DEADLINE
    while sink.stats().queue_depth:
        assert time.monotonic() < deadline, "the sink did not take its packets"
        time.sleep(0.001)


def test_arrivals_stamped_in_the_future_lose_no_speech(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(100.0)
    start = clock.now + 0.2
    frames = encode(tone(300, 150))
    sent = packets(frames, start=start, seq0=40_000, ts0=9_999, ssrc=4)
    sink = AudioSink(tmp_path, clock=clock)
    for k, p in enumerate(sent):
        clock.now = max(clock.now, p.received_at)  # the sink's clock follows the real arrivals
        if 60 <= k < 65:  # one read batch converted after the wall clock stepped forward
            p = VoicePacket(p.sequence, p.timestamp, p.opus, p.received_at + STEP, p.ssrc)
        assert sink.write(7, p)
        _wait_handled(sink)
    clock.now = start + 4.0
    sink.close()
    stats = sink.stats()
    track = sf.read(tmp_path / "7.wav", dtype="int16", always_2d=True)[0][:, 0]

    assert len(track) == round(4.2 * SAMPLE_RATE), f"the track is {len(track) / SAMPLE_RATE:.2f} s long"
    offset = round(0.2 * SAMPLE_RATE)
    reference = decode_offline(frames)[:, 0]
    assert np.array_equal(track[offset:offset + len(reference)], reference), "speech was lost or moved"
    assert stats.decoded == 150 and stats.lost == 0 and stats.late == 0
