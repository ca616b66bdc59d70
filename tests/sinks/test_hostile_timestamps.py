"""RTP timestamps that lie: the arrival clock bounds where a frame may land.

Found by the receive-path fuzz campaign (``python -m tests.bench fuzz``): a
sender's RTP timestamp is its own claim, and one far in the future used to put
its frame up to 12 hours on, the gap filled with silence (gigabytes of WAV
from a few packets).
"""

from __future__ import annotations

import pathlib
import random

import numpy as np

from sinks import VoicePacket
from sinks.opus import SAMPLE_RATE
from tests.sinks.streams import FakeClock, arrival_order, decode_offline, encode, packets, tone

from .test_sink import record


def test_random_timestamps_do_not_grow_the_recording(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(100.0)
    start, seconds = clock.now + 0.2, 4.0
    honest_frames = encode(tone(300, 150))
    honest = packets(honest_frames, start=start, seq0=10, ts0=5_000, ssrc=1)
    rng = random.Random(7)
    liar, seq = [], 900
    for p in packets(encode(tone(500, 150)), start=start, seq0=0, ts0=0, ssrc=2):
        # Sequence numbers that step, skip, go back by one and jump (all within one stream).
        seq = (seq + rng.choice((1, 1, 2, 50, 2999, 65535))) & 0xFFFF
        liar.append(VoicePacket(seq, rng.randrange(2**32), p.opus, p.received_at, 2))
    tracks, stats = record(tmp_path, clock, arrival_order([(1, p) for p in honest] + [(2, p) for p in liar]),
                           end=start + seconds)

    length = round((seconds + 0.2) * SAMPLE_RATE)
    assert {len(t) for t in tracks.values()} == {length}, {u: len(t) for u, t in tracks.items()}
    offset = round(0.2 * SAMPLE_RATE)
    reference = decode_offline(honest_frames)[:, 0]
    assert np.array_equal(tracks[1][offset:offset + len(reference), 0], reference)
    assert (stats.per_user[1].packets, stats.per_user[1].lost) == (150, 0)


def test_one_lying_timestamp_leaves_the_stream_in_place(tmp_path: pathlib.Path) -> None:
    """The frame with the wild timestamp lands at its arrival, and so does the next one: nothing moves."""
    clock = FakeClock(100.0)
    start = clock.now + 0.1
    frames = encode(tone(250, 100))
    sent = packets(frames, start=start, seq0=65_000, ts0=123_456, ssrc=3)
    for k, jump in ((30, 1_000_000_000), (60, -1_000_000_000)):
        p = sent[k]
        sent[k] = VoicePacket(p.sequence, (p.timestamp + jump) % 2**32, p.opus, p.received_at, p.ssrc)
    tracks, stats = record(tmp_path, clock, [(5, p) for p in sent], end=start + 2.5)

    offset = round(0.1 * SAMPLE_RATE)
    reference = decode_offline(frames)[:, 0]
    track = tracks[5][:, 0]
    assert len(track) == round(2.6 * SAMPLE_RATE)
    assert np.array_equal(track[offset:offset + len(reference)], reference)
    assert stats.decoded == 100 and stats.lost == 0
