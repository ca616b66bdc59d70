"""AudioSink end to end: real Opus in, real WAV files out, a fake clock where wall time is not the point."""

from __future__ import annotations

import errno
import pathlib
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from sinks import AudioSink, EngineStats, VoicePacket
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE, SILENCE_FRAME
from tests.disks import tmpfs
from tests.sinks.streams import (
    ALIGNMENT_LIMIT,
    CODEC_DELAY,
    FRAME_SECONDS,
    FakeClock,
    arrival_order,
    decode_offline,
    encode,
    onsets,
    packets,
    tone,
)


def record(
    directory: pathlib.Path, clock: FakeClock, items: list[tuple[int, VoicePacket]],
    end: float, **options: object,
) -> tuple[dict[int, np.ndarray], EngineStats]:
    """Feed the items in order (clock following arrivals), close at ``end``, read every file."""
    sink = AudioSink(directory, clock=clock, **options)  # type: ignore[arg-type]
    for user, packet in items:
        clock.now = max(clock.now, packet.received_at)
        assert sink.write(user, packet)
    clock.now = end
    sink.close()
    stats = sink.stats()
    tracks = {int(p.stem): sf.read(p, dtype="int16", always_2d=True)[0] for p in directory.glob("*.wav")}
    return tracks, stats


def test_batch_equals_streaming_sample_for_sample(tmp_path: pathlib.Path) -> None:
    """Reordered and duplicated (never lost) packets across seq/ts wraps give the offline decode exactly."""
    clock = FakeClock(500.0)
    frames = encode(tone(300, 150))
    delays = [0.0] * len(frames)
    for k in (7, 40, 41, 90, 120):
        delays[k] = 0.025 + 0.012 * (k % 5)  # overtaken by 1-4 later packets
    start = clock.now + 0.3
    sent = packets(frames, start=start, seq0=65_500, ts0=0xFFFF_FFFF - 20 * FRAME_SAMPLES, ssrc=9, delays=delays)
    dups = [VoicePacket(p.sequence, p.timestamp, p.opus, p.received_at + 0.03, p.ssrc) for p in sent[::17]]
    items = arrival_order([(42, p) for p in sent + dups])
    tracks, stats = record(tmp_path, clock, items, end=start + 4.0)

    reference = decode_offline(frames)
    offset = round(0.3 * SAMPLE_RATE)
    track = tracks[42][:, 0]
    assert len(track) == round((4.0 + 0.3) * SAMPLE_RATE)
    assert np.array_equal(track[offset:offset + len(reference)], reference[:, 0])
    assert not track[:offset].any() and not track[offset + len(reference):].any()
    assert stats.decoded == 150 and stats.duplicates == len(dups)
    assert stats.lost == stats.late == stats.dropped == 0
    assert stats.per_user[42].talk_seconds == pytest.approx(3.0, abs=0.05)
    assert stats.bytes_written == len(track) * 2


def test_two_users_land_where_they_were_received(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(10.0)
    origin = clock.now
    a = packets(encode(tone(440, 50)), start=origin + 0.30, seq0=12, ts0=777_777, ssrc=1,
                delays=[0.005] * 50)
    b = packets(encode(tone(950, 50)), start=origin + 0.72, seq0=60_000, ts0=3_000_000_000, ssrc=2,
                delays=[0.045] * 50)
    tracks, stats = record(tmp_path, clock, arrival_order([(1, p) for p in a] + [(2, p) for p in b]),
                           end=origin + 2.0)
    assert len(tracks[1]) == len(tracks[2]) == 2 * SAMPLE_RATE
    for user, first in ((1, a[0]), (2, b[0])):
        expected = round((first.received_at - origin) * SAMPLE_RATE) + CODEC_DELAY
        (onset,) = onsets(tracks[user])
        assert abs(onset - expected) <= ALIGNMENT_LIMIT, (user, onset, expected)
    assert stats.users == 2 and stats.decoded == 100


def test_ssrc_change_continues_the_same_track(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(0.0)
    before = packets(encode(tone(500, 40)), start=0.2, seq0=100, ts0=5_000, ssrc=11)
    after = packets(encode(tone(500, 40)), start=1.5, seq0=40_000, ts0=4_000_000_000, ssrc=12)
    # A straggler from the old SSRC after the switch is late, not a new stream.
    straggler = VoicePacket(140, 5_000 + 40 * FRAME_SAMPLES, before[-1].opus, 1.52, 11)
    items = [(5, p) for p in before] + [(5, p) for p in after[:2]] + [(5, straggler)] + [(5, p) for p in after[2:]]
    tracks, stats = record(tmp_path, clock, items, end=3.0)
    assert list(tracks) == [5]
    starts = onsets(tracks[5])
    assert len(starts) == 2
    assert abs(starts[0] - (round(0.2 * SAMPLE_RATE) + CODEC_DELAY)) <= ALIGNMENT_LIMIT
    assert abs(starts[1] - (round(1.5 * SAMPLE_RATE) + CODEC_DELAY)) <= ALIGNMENT_LIMIT
    assert stats.decoded == 80 and stats.late == 1 and stats.lost == 0


@pytest.mark.parametrize("rtp_advances", [True, False])
def test_burst_after_silence_is_placed_by_arrival(tmp_path: pathlib.Path, rtp_advances: bool) -> None:
    """A Discord client that stops talking sends five silence frames, then nothing; the
    next burst lands where it arrived whether or not the sender's RTP clock ran through
    the silence."""
    clock = FakeClock(0.0)
    frames = encode(tone(600, 60))
    spoken = frames[:30] + [SILENCE_FRAME] * 5
    first = packets(spoken, start=0.2, seq0=1000, ts0=0, ssrc=3)
    ts_after = 35 * FRAME_SAMPLES + (round(1.2 * SAMPLE_RATE) if rtp_advances else 0)
    second = packets(frames[30:], start=1.8, seq0=1035, ts0=ts_after, ssrc=3, delays=[0.003] * 30)
    tracks, stats = record(tmp_path, clock, [(1, p) for p in first + second], end=3.0)
    track = tracks[1][:, 0]
    reference = decode_offline(spoken + frames[30:])[:, 0]
    before, after = round(0.2 * SAMPLE_RATE), round(1.803 * SAMPLE_RATE)
    cut = len(spoken) * FRAME_SAMPLES
    assert np.array_equal(track[before:before + cut], reference[:cut])
    assert np.array_equal(track[after:after + len(reference) - cut], reference[cut:])
    assert not track[before + cut:after].any()
    assert stats.lost == 0 and stats.decoded == 65


def test_packets_held_up_mid_sentence_keep_their_place(tmp_path: pathlib.Path) -> None:
    """The network holds a talking speaker's packets back 100 ms, then drains its queue
    at twice their rate: the first of them arrives 120 ms after the one before, as a
    burst after a pause would, but it follows speech, not the silence frames a pause
    starts with. Every frame stays where its RTP time puts it and nothing is cut (the
    gap was taken for a pause: the rest of the sentence moved to the late arrivals, and
    the on-time packets after them cut frames to move it back)."""
    clock = FakeClock(0.0)
    frames = encode(tone(450, 100))
    delays = [0.0] * 100
    for k in range(40, 50):
        delays[k] = 0.1 - 0.01 * (k - 40)  # held 100 ms, then one every 10 ms until caught up
    sent = packets(frames, start=0.2, seq0=300, ts0=12_345, ssrc=8, delays=delays)
    tracks, stats = record(tmp_path, clock, arrival_order((1, p) for p in sent), end=2.5)
    track = tracks[1][:, 0]
    reference = decode_offline(frames)[:, 0]
    start = round(0.2 * SAMPLE_RATE)
    assert np.array_equal(track[start:start + len(reference)], reference)
    assert not track[:start].any() and not track[start + len(reference):].any()
    assert stats.decoded == 100 and stats.lost == stats.late == 0


def test_late_first_packet_never_costs_audio_later(tmp_path: pathlib.Path) -> None:
    """A first packet 9.5 ms late (under the 10 ms tolerance), then one 0.6 ms faster than
    the rest, 1.2 s on: the anchor follows the faster packets before anything is placed,
    so the late one moves nothing back across written audio (it cut a frame before)."""
    clock = FakeClock(0.0)
    frames = encode(tone(450, 100))
    delays = [0.0015 * (k % 2) for k in range(100)]
    delays[0] = 0.0095
    delays[60] = -0.0006
    sent = packets(frames, start=0.2, seq0=7, ts0=99, ssrc=4, delays=delays)
    tracks, stats = record(tmp_path, clock, [(1, p) for p in sent], end=2.5)
    track = tracks[1][:, 0]
    reference = decode_offline(frames)[:, 0]
    start = round(0.2 * SAMPLE_RATE)
    assert np.array_equal(track[start:start + len(reference)], reference)
    assert not track[:start].any() and not track[start + len(reference):].any()
    assert stats.decoded == 100 and stats.lost == 0


def test_an_anchor_set_by_late_packets_costs_only_what_the_slip_cannot_take(tmp_path: pathlib.Path) -> None:
    """The first eight packets come 19 ms late (the anchor is set by them), then on time:
    the anchor moves back 19 ms while the speaker talks. The track may run 10 ms behind
    rather than lose speech, so the frame whose place is already written loses 9 ms of
    its head (it lost all 19 before), and the silence before the next burst is 10 ms
    shorter, so that burst is back where it belongs."""
    clock = FakeClock(0.0)
    frames = encode(tone(450, 100))
    late = [0.019] * 8 + [0.0] * 42
    first = packets(frames[:50], start=0.2, seq0=40, ts0=5, ssrc=6, delays=late)
    # The sender's RTP clock runs through the silence: the second burst needs no new anchor.
    second = packets(frames[50:], start=2.2, seq0=90, ts0=5 + 100 * FRAME_SAMPLES, ssrc=6)
    tracks, stats = record(tmp_path, clock, [(1, p) for p in first + second], end=3.5)
    track = tracks[1][:, 0]
    reference = decode_offline(frames)[:, 0]
    half, before = 50 * FRAME_SAMPLES, 8 * FRAME_SAMPLES
    cut = round(0.019 * SAMPLE_RATE) - round(0.010 * SAMPLE_RATE)
    spoken = round(0.219 * SAMPLE_RATE)
    assert np.array_equal(track[spoken:spoken + before], reference[:before])
    after = spoken + before
    assert np.array_equal(track[after:after + half - before - cut], reference[before + cut:half])
    resumed = round(2.2 * SAMPLE_RATE)
    assert not track[:spoken].any() and not track[after + half - before - cut:resumed].any()
    assert np.array_equal(track[resumed:resumed + half], reference[half:])
    assert stats.decoded == 100 and stats.lost == 0


def test_sender_clock_drift_is_followed(tmp_path: pathlib.Path) -> None:
    """A sender clock 2000 ppm slow: uncorrected, marks would be 120 ms off after a minute."""
    clock = FakeClock(0.0)
    frames_total = 60 * 50
    pattern = [(k % 500) < 10 for k in range(frames_total)]  # a 200 ms mark every 10 s
    frames = encode(tone(700, frames_total, pattern=pattern))
    sent = packets(frames, start=0.1, seq0=0, ts0=123, ssrc=1, rate=1.002,
                   delays=[0.01 + 0.004 * ((k * 7) % 5) for k in range(frames_total)])
    tracks, stats = record(tmp_path, clock, [(1, p) for p in sent], end=62.0)
    starts = onsets(tracks[1])
    assert len(starts) == 6
    for mark, onset in enumerate(starts):
        expected = round((0.1 + mark * 10 * 1.002 + 0.01) * SAMPLE_RATE) + CODEC_DELAY
        assert abs(onset - expected) <= ALIGNMENT_LIMIT, (mark, onset - expected)


def test_loss_is_concealed_and_counted(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(0.0)
    frames = encode(tone(400, 100), fec=True)
    sent = packets(frames, start=0.1, seq0=65_530, ts0=0xFFFF_F000, ssrc=1)
    dropped = {20} | set(range(50, 60))
    tracks, stats = record(tmp_path, clock, [(1, p) for k, p in enumerate(sent) if k not in dropped], end=2.5)
    assert stats.lost == 11
    assert stats.concealed == 1 + 5 + 1  # FEC; 5 PLC frames + FEC for the long hole
    assert stats.decoded == 89
    assert {uid: (user.packets, user.lost) for uid, user in stats.per_user.items()} == {1: (89, 11)}
    track = tracks[1][:, 0]
    assert len(track) == round(2.5 * SAMPLE_RATE)
    # The single loss is bridged with audio (no hole); the long one is silent in the middle.
    lone = round((0.1 + 20 * FRAME_SECONDS) * SAMPLE_RATE)
    assert np.abs(track[lone:lone + FRAME_SAMPLES]).max() > 1000
    hole = round((0.1 + 57 * FRAME_SECONDS) * SAMPLE_RATE)
    assert not track[hole:hole + 480].any()
    # A few frames after the hole (the decoder needs them to recover) the audio is back
    # in place: it matches a loss-free decode closely, which a misplacement would not.
    after = round((0.1 + 65 * FRAME_SECONDS) * SAMPLE_RATE)
    reference = decode_offline(frames)[65 * FRAME_SAMPLES:66 * FRAME_SAMPLES, 0].astype(float)
    error = track[after:after + FRAME_SAMPLES].astype(float) - reference
    assert np.sqrt(np.mean(error ** 2)) < 0.05 * np.sqrt(np.mean(reference ** 2))


def test_late_packet_is_counted_and_dropped(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(0.0)
    frames = encode(tone(400, 40))
    delays = [0.0] * 40
    delays[10] = 0.5  # arrives long after its slot was concealed and committed
    sent = packets(frames, start=0.1, seq0=0, ts0=0, ssrc=1, delays=delays)
    tracks, stats = record(tmp_path, clock, arrival_order([(1, p) for p in sent]), end=1.5)
    assert stats.late == 1 and stats.lost == 1 and stats.decoded == 39
    assert len(tracks[1]) == round(1.5 * SAMPLE_RATE)


def test_bad_packets_are_counted_and_the_worker_carries_on(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(0.0)
    frames = encode(tone(400, 30))
    sent = packets(frames, start=0.1, seq0=0, ts0=0, ssrc=1)
    sent[5] = VoicePacket(5, 5 * FRAME_SAMPLES, b"\xff\xff\xff\xff\x00", sent[5].received_at, 1)
    items: list = [(1, p) for p in sent]
    items.insert(3, (1, "not a packet"))
    items.insert(9, (1, VoicePacket(None, 0, b"", 0.2, 1)))  # type: ignore[arg-type]
    items.insert(12, ("user", sent[0]))
    sink = AudioSink(tmp_path, clock=clock)
    for user, packet in items:
        assert sink.write(user, packet)
    clock.now = 1.0
    sink.close()
    stats = sink.stats()
    assert stats.decode_errors == 1 and stats.invalid == 3
    assert stats.decoded == 29 and stats.failure is None
    assert sf.info(tmp_path / "1.wav").frames == SAMPLE_RATE


def test_queue_full_drops_and_counts(tmp_path: pathlib.Path) -> None:
    """The worker is held inside the clock; write() keeps returning at once, False when full."""
    gate, held = threading.Event(), threading.Event()
    test_thread = threading.get_ident()

    def clock() -> float:
        if threading.get_ident() != test_thread:
            held.set()
            gate.wait()
        return 0.0

    sink = AudioSink(tmp_path, queue_size=8, clock=clock)
    frames = encode(tone(400, 40))
    sent = packets(frames, start=0.0, seq0=0, ts0=0, ssrc=1)
    assert sink.write(1, sent[0])
    # The worker takes it, then looks at the clock for its reorder windows: held there.
    assert held.wait(10)
    results = [sink.write(1, p) for p in sent[1:]]
    assert results == [True] * 8 + [False] * 31
    stats = sink.stats()
    assert stats.dropped == 31 and stats.queue_depth == 8 and stats.received == 40
    assert stats.drop_rate == pytest.approx(31 / 40)
    gate.set()
    sink.close()
    stats = sink.stats()
    assert stats.queue_high_water == 8 and stats.dropped == 31 and stats.received == 40


def test_close_leaves_no_thread_and_finalized_files(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(0.0)
    sink = AudioSink(tmp_path, clock=clock, channels=2)
    assert sink.add_user(77)  # registered, never speaks
    for p in packets(encode(tone(400, 25)), start=0.2, seq0=0, ts0=0, ssrc=1):
        clock.now = p.received_at
        sink.write(8, p)
    clock.now = 1.25
    sink.close()
    sink.close()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("AudioSink")]
    assert sink.write(8, p) is False and sink.closed
    for user in (8, 77):
        info = sf.info(tmp_path / f"{user}.wav")
        assert (info.frames, info.channels, info.samplerate, info.subtype) == (60_000, 2, SAMPLE_RATE, "PCM_16")
    silent = sf.read(tmp_path / "77.wav", dtype="int16")[0]
    assert not silent.any()
    assert {uid: user.talk_seconds for uid, user in sink.stats().per_user.items()} == {
        77: 0.0, 8: pytest.approx(0.5, abs=0.03)}


def test_close_without_audio_makes_no_files(tmp_path: pathlib.Path) -> None:
    sink = AudioSink(tmp_path / "new" / "dir")
    sink.close()
    assert list((tmp_path / "new" / "dir").iterdir()) == []
    assert sink.stats().received == 0 and sink.failure is None


def test_headers_are_synced_while_idle(tmp_path: pathlib.Path) -> None:
    """Without close and without further packets, the file on disk becomes valid and complete within a second or so."""
    clock = FakeClock(0.0)
    sink = AudioSink(tmp_path, clock=clock)
    for p in packets(encode(tone(400, 50)), start=0.1, seq0=0, ts0=0, ssrc=1):
        clock.now = p.received_at
        sink.write(1, p)
    expected = round(0.1 * SAMPLE_RATE) + 50 * FRAME_SAMPLES
    deadline = time.monotonic() + 15
    while not (tmp_path / "1.wav").exists() or sf.info(tmp_path / "1.wav").frames < expected:
        assert time.monotonic() < deadline, "header never brought up to date"
        time.sleep(0.05)
    assert sf.info(tmp_path / "1.wav").frames == expected
    sink.close()


def test_disk_full_stops_writing_but_not_the_sink(tmp_path: pathlib.Path) -> None:
    # A write to a file already open fails (a 64 KiB tmpfs fills up): fatal to the recording.
    # (A file that cannot be *created* is one user's loss only: tests/sinks/test_open_failures.py.)
    with tmpfs(tmp_path / "disk", "64k") as disk:
        clock = FakeClock(0.0)
        sink = AudioSink(disk, clock=clock, queue_size=64)
        good = packets(encode(tone(400, 150)), start=0.1, seq0=0, ts0=0, ssrc=1)
        for p in good:
            clock.now = p.received_at
            while not sink.write(1, p):  # a bounded queue: wait for room, lose nothing before the failure
                time.sleep(0.001)
        deadline = time.monotonic() + 10
        while sink.stats().failure is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        failure = sink.stats().failure
        assert failure is not None and "No space left" in failure.message and failure.errno == errno.ENOSPC
        # The worker keeps draining: far more packets than the queue holds are all accepted in time.
        accepted = 0
        for k in range(2000):
            accepted += sink.write(1, good[k % 20])
            if k % 50 == 0:
                time.sleep(0.001)
        assert accepted > 64
        clock.now = 4.0
        sink.close()
        stats = sink.stats()
        assert stats.discarded >= accepted
        # What reached the disk before the error is a valid, finalized file (not padded: writing stopped).
        frames = sf.info(disk / "1.wav").frames
        assert 0 < frames < round(0.1 * SAMPLE_RATE) + 150 * FRAME_SAMPLES
        assert (disk / "1.wav").stat().st_size == 80 + 2 * frames
