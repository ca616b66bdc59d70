"""Users divided among several workers (a slice of the recording each); recordings sharing a
worker pool; sampled write() latency; worker lag high-water; the close log."""

from __future__ import annotations

import json
import logging
import pathlib
import threading

import numpy as np
import pytest
import soundfile as sf

from sinks import AudioSink, EngineStats, VoicePacket
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE
from sinks.sink import WRITE_SAMPLE_EVERY
from sinks.slices import LAG_SAMPLE_EVERY
from sinks.worker import WorkerPool
from tests.sinks.streams import FakeClock, arrival_order, encode, packets, tone

USERS = (11, 12, 13, 14, 15, 16, 17)


def _items(origin: float) -> list[tuple[int, VoicePacket]]:
    """Seven users with their own tones, start times, sequence and timestamp origins."""
    items = []
    for n, user in enumerate(USERS):
        frames = encode(tone(200 + 90 * n, 40 + 7 * n))
        items += [(user, p) for p in packets(frames, start=origin + 0.1 * n, seq0=65_530 - n,
                                             ts0=1_000_000 * n, ssrc=100 + n, delays=[0.004 * n] * len(frames))]
    return arrival_order(items)


def _record(directory: pathlib.Path, workers: int) -> tuple[dict[int, np.ndarray], EngineStats]:
    clock = FakeClock(50.0)
    sink = AudioSink(directory, clock=clock, workers=workers)
    for user, packet in _items(clock.now + 0.2):
        clock.now = max(clock.now, packet.received_at)
        assert sink.write(user, packet)
    # The last speaker's RTP time runs past the close: every track is padded to its end.
    clock.now = 50.0 + 1.0
    sink.close()
    tracks = {int(p.stem): sf.read(p, dtype="int16")[0] for p in directory.glob("*.wav")}
    return tracks, sink.stats()


def test_slices_on_several_workers_write_the_same_files_as_one(tmp_path: pathlib.Path) -> None:
    one, one_stats = _record(tmp_path / "one", 1)
    three, three_stats = _record(tmp_path / "three", 3)
    assert sorted(three) == sorted(USERS)
    assert len({len(t) for t in three.values()}) == 1, "all tracks end at the same sample"
    for user in USERS:
        assert np.array_equal(one[user], three[user]), user
    assert three_stats.workers == 3 and three_stats.users == len(USERS)
    for key in ("received", "decoded", "lost", "late", "duplicates", "dropped", "bytes_written"):
        assert getattr(three_stats, key) == getattr(one_stats, key), key
    assert three_stats.per_user == one_stats.per_user


def test_every_worker_gets_users(tmp_path: pathlib.Path) -> None:
    """user_id % workers spreads consecutive ids over every worker."""
    sink = AudioSink(tmp_path, workers=3)
    for user in USERS:
        assert sink.add_user(user)
    sink.close()
    owned = [sorted(slice_.tracks) for slice_ in sink._slices]  # noqa: SLF001 - which worker owns whom
    assert owned == [[12, 15], [13, 16], [11, 14, 17]]


def test_write_latency_is_sampled(tmp_path: pathlib.Path) -> None:
    sink = AudioSink(tmp_path, queue_size=10_000)
    frame = encode(tone(300, 1))[0]
    assert sink.stats().write_p99_us is None
    for i in range(5 * WRITE_SAMPLE_EVERY):
        sink.write(7, VoicePacket(i, i * FRAME_SAMPLES, frame, 0.0, 1))
    stats = sink.stats()
    sink.close()
    assert stats.write_samples == 5
    assert 0 < stats.write_p50_us <= stats.write_p99_us


def test_worker_lag_high_water(tmp_path: pathlib.Path) -> None:
    """Packets that waited 2 s before the worker took them show as a 2 s lag, after they are done."""
    clock = FakeClock(100.0)
    sink = AudioSink(tmp_path, clock=clock)
    frames = encode(tone(300, LAG_SAMPLE_EVERY))
    for p in packets(frames, start=98.0, seq0=0, ts0=0, ssrc=3):
        sink.write(3, VoicePacket(p.sequence, p.timestamp, p.opus, 98.0, p.ssrc))
    sink.close()
    assert sink.stats().worker_lag_max == pytest.approx(2.0)


def test_close_logs_the_counters(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0)
    sink = AudioSink(tmp_path / "rec-1", clock=clock, workers=2)
    for user, packet in _items(0.1):
        clock.now = max(clock.now, packet.received_at)
        sink.write(user, packet)
    clock.now = 1.0
    with caplog.at_level(logging.INFO, logger="sinks.sink"):
        sink.close()
        sink.close()
    lines = [r.getMessage() for r in caplog.records if "recording engine rec-1 closed" in r.getMessage()]
    assert len(lines) == 1
    logged = json.loads(lines[0].split("closed: ", 1)[1])
    assert logged["received"] == sink.stats().received > 0
    assert logged["dropped"] == 0 and logged["workers"] == 2 and logged["users"] == len(USERS)
    assert logged["failure"] is None


def test_workers_must_be_positive(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        AudioSink(tmp_path, workers=0)


def _record_side_by_side(directories: tuple[pathlib.Path, pathlib.Path], pool: WorkerPool) -> list[AudioSink]:
    """Two recordings on one pool, their packets interleaved; the first is closed while the second records."""
    clock = FakeClock(50.0)
    first, second = (AudioSink(d, clock=clock, pool=pool) for d in directories)
    items = _items(clock.now + 0.2)
    for user, packet in items:
        clock.now = max(clock.now, packet.received_at)
        assert first.write(user, packet) and second.write(user, packet)
    clock.now = 50.0 + 1.0
    first.close()
    assert pool.alive and not second.closed
    return [first, second]


def test_recordings_sharing_a_pool_write_what_each_writes_alone(tmp_path: pathlib.Path) -> None:
    alone, alone_stats = _record(tmp_path / "alone", 2)
    pool = WorkerPool(2, name="test")
    try:
        first, second = _record_side_by_side((tmp_path / "a", tmp_path / "b"), pool)
        # The first one is finished while the second still records: its files are whole already.
        for user in USERS:
            assert np.array_equal(sf.read(tmp_path / "a" / f"{user}.wav", dtype="int16")[0], alone[user]), user
        second.close()
    finally:
        pool.close()
    for name, sink in (("a", first), ("b", second)):
        stats = sink.stats()
        for user in USERS:
            assert np.array_equal(sf.read(tmp_path / name / f"{user}.wav", dtype="int16")[0], alone[user]), user
        for key in ("received", "decoded", "lost", "late", "duplicates", "dropped", "discarded", "bytes_written"):
            assert getattr(stats, key) == getattr(alone_stats, key), key
        assert stats.per_user == alone_stats.per_user and stats.workers == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("AudioSink(test)")]


def test_a_shared_pool_keeps_running_until_closed(tmp_path: pathlib.Path) -> None:
    pool = WorkerPool(1, name="test")
    try:
        for n in range(3):
            clock = FakeClock(10.0)
            sink = AudioSink(tmp_path / str(n), pool=pool, clock=clock)
            assert sink.add_user(7)
            clock.now = 10.5
            sink.close()
            assert sf.info(tmp_path / str(n) / "7.wav").frames == SAMPLE_RATE // 2 and pool.alive
    finally:
        pool.close()
    assert not pool.alive


def test_pool_settings_are_the_pools(tmp_path: pathlib.Path) -> None:
    pool = WorkerPool(1, name="test")
    try:
        for setting in ({"workers": 2}, {"queue_size": 10}):
            with pytest.raises(ValueError, match="pool's settings"):
                AudioSink(tmp_path, pool=pool, **setting)  # type: ignore[arg-type]
    finally:
        pool.close()


def test_closing_on_a_stopped_pool_says_so(tmp_path: pathlib.Path) -> None:
    pool = WorkerPool(1, name="test")
    sink = AudioSink(tmp_path, pool=pool)
    pool.close()
    with pytest.raises(RuntimeError, match="workers stopped"):
        sink.close()


def test_a_worker_far_behind_leaves_gaps_silent_instead_of_concealing(tmp_path: pathlib.Path) -> None:
    """Concealment costs a decode per lost frame: a worker with more than half its queue
    waiting skips it (counted as shed) so it can catch up; once caught up it conceals again."""
    pool = WorkerPool(1, queue_size=100)
    clock = FakeClock(0.0)
    sink = AudioSink(tmp_path, pool=pool, clock=clock)
    gate = threading.Event()
    pool.workers[0].send(gate.wait)  # the worker waits here while the queue fills
    sent = packets(encode(tone(400, 90), fec=True), start=0.1, seq0=0, ts0=0, ssrc=1)
    early_gap, late_gap = 10, 85  # taken with about 78 and 4 packets still waiting
    for k, packet in enumerate(sent):
        if k not in (early_gap, late_gap):
            clock.now = packet.received_at
            assert sink.write(1, packet)
    gate.set()
    clock.now = 2.0
    sink.close()
    pool.close()
    stats = sink.stats()
    assert stats.lost == 2 and stats.decoded == 88
    assert stats.shed == 1 and stats.concealed == 1
    track = sf.read(tmp_path / "1.wav", dtype="int16")[0]
    early = round((0.1 + early_gap * 0.02) * SAMPLE_RATE)
    late = round((0.1 + late_gap * 0.02) * SAMPLE_RATE)
    assert not track[early:early + FRAME_SAMPLES].any()
    assert np.abs(track[late:late + FRAME_SAMPLES]).max() > 1000
