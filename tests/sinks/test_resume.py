"""A sink continuing a recording an earlier sink wrote (a restart of the bot): same files, same timeline."""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

from sinks import AudioSink
from sinks.opus import SAMPLE_RATE
from sinks.wavfile import WavWriter, repair_wav
from tests.sinks.streams import FakeClock, decode_offline, encode, packets, tone


def _read(path: pathlib.Path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def test_a_resumed_sink_appends_at_the_recordings_elapsed_position(tmp_path: pathlib.Path) -> None:
    """Alice and Bob record 2 s; 3 s later a new sink on the same origin goes on: Bob talks again,
    Carol is new. Every track keeps what it had, the time away is silence, and all end together."""
    clock = FakeClock(100.0)
    origin = clock.now
    first = AudioSink(tmp_path, clock=clock)
    alice = packets(encode(tone(440, 50)), start=origin + 0.5, seq0=1, ts0=1000, ssrc=1)
    bob = packets(encode(tone(700, 50)), start=origin + 0.5, seq0=9, ts0=5000, ssrc=2)
    for a, b in zip(alice, bob):
        clock.now = a.received_at
        first.write(1, a)
        first.write(2, b)
    clock.now = origin + 2.0
    first.close()
    before = {uid: _read(tmp_path / f"{uid}.wav") for uid in (1, 2)}
    assert {len(t) for t in before.values()} == {2 * SAMPLE_RATE}

    clock.now = origin + 5.0  # the restart took 3 s
    second = AudioSink(tmp_path, clock=clock, origin=origin, resume=True)
    bob_again = encode(tone(700, 25))
    carol = encode(tone(300, 25))
    for k, (b, c) in enumerate(zip(packets(bob_again, start=origin + 5.2, seq0=3000, ts0=9_000_000, ssrc=2),
                                   packets(carol, start=origin + 5.2, seq0=77, ts0=42, ssrc=3))):
        clock.now = b.received_at
        second.write(2, b)
        second.write(3, c)
    clock.now = origin + 6.0
    second.close()

    after = {uid: _read(tmp_path / f"{uid}.wav") for uid in (1, 2, 3)}
    assert {len(t) for t in after.values()} == {6 * SAMPLE_RATE}
    for uid in (1, 2):
        assert np.array_equal(after[uid][:2 * SAMPLE_RATE], before[uid])
    assert not after[1][2 * SAMPLE_RATE:].any()
    at = round(5.2 * SAMPLE_RATE)
    assert not after[2][2 * SAMPLE_RATE:at].any() and not after[3][:at].any()
    assert np.array_equal(after[2][at:at + 25 * 960], decode_offline(bob_again)[:, 0])
    assert np.array_equal(after[3][at:at + 25 * 960], decode_offline(carol)[:, 0])
    assert set(second.stats().per_user) == {1, 2, 3}


def test_appending_continues_a_repaired_rf64_file(tmp_path: pathlib.Path) -> None:
    """A file cut by a crash past the RF64 switch is repaired, then appended to: one valid file."""
    path = tmp_path / "1.wav"
    one = np.arange(-300, 300, dtype=np.int16)
    with WavWriter(path, 1, rf64_threshold=100) as writer:
        writer.append(one)
    with open(path, "ab") as crashed:  # audio the OS got after the last header refresh, and half a frame
        crashed.write(one.tobytes() + b"\x01")
    repair_wav(path)
    with WavWriter(path, 1, append=True, rf64_threshold=100) as again:
        assert again.frames == 2 * len(one)
        again.append(one)
    assert path.read_bytes()[:4] == b"RF64"
    assert np.array_equal(_read(path), np.concatenate([one, one, one]))
