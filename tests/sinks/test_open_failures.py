"""A speaker's track that cannot be created (no file descriptor, no room for its header) is that
speaker's loss alone: the other speakers on the same worker keep every sample, the starved
speaker's track is created once the cause has passed (silent before), and every track ends at
the same sample. A write failing on a file already open still stops the recording.

Real AudioSink, real Opus, real files; the faults are real too: the process runs out of
descriptors (RLIMIT_NOFILE lowered and every free one held), ``/dev/full`` gives ENOSPC,
and a small tmpfs fills up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import resource
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf

from sinks import AudioSink, VoicePacket
from sinks.slices import OPEN_RETRY
from tests.disks import tmpfs
from tests.polling import wait_until
from tests.sinks.streams import FakeClock, arrival_order, encode, packets, tone

ALICE, BOB = 1, 2
END = 3.2


def _alice() -> list[VoicePacket]:
    return packets(encode(tone(330, 150)), start=0.1, seq0=100, ts0=5_000, ssrc=11)


def _bob() -> list[VoicePacket]:
    return packets(encode(tone(550, 130)), start=0.5, seq0=40_000, ts0=900_000, ssrc=22)


def _reference(directory: pathlib.Path, items: list[tuple[int, VoicePacket]]) -> dict[int, np.ndarray]:
    """What a sink records from ``items`` with nothing going wrong (same clock, same close)."""
    clock = FakeClock(0.0)
    sink = AudioSink(directory, clock=clock)
    for user, packet in items:
        clock.now = max(clock.now, packet.received_at)
        assert sink.write(user, packet)
    clock.now = END
    sink.close()
    return {int(p.stem): sf.read(p, dtype="int16")[0] for p in directory.glob("*.wav")}


@contextlib.contextmanager
def _no_descriptors_left() -> Iterator[None]:
    """Hold every file descriptor the process may still open (soft RLIMIT_NOFILE lowered
    first, so that is few), then give them all back and restore the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, hard))
    held: list[int] = []
    try:
        with pytest.raises(OSError) as exhausted:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        assert exhausted.value.errno == errno.EMFILE
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_running_out_of_descriptors_loses_only_the_new_speaker_until_they_are_back(tmp_path: pathlib.Path) -> None:
    alice, bob = _alice(), _bob()
    clock = FakeClock(0.0)
    # One worker: both speakers share a slice, as many do on a busy bot.
    sink = AudioSink(tmp_path / "rec", clock=clock, workers=1)

    def feed(items: list[tuple[int, VoicePacket]]) -> None:
        for user, packet in items:
            clock.now = max(clock.now, packet.received_at)
            assert sink.write(user, packet)

    # Alice speaks first: her track is open before the descriptors run out.
    feed([(ALICE, p) for p in alice if p.received_at < 0.5])
    wait_until(lambda: sink.stats().users == 1 and sink.stats().queue_depth == 0, "alice's track", 15.0)
    released_at = 0.5 + OPEN_RETRY
    with _no_descriptors_left():
        # Bob's first packet: his file cannot be created (EMFILE).
        feed([(BOB, bob[0])])
        wait_until(lambda: sink.stats().queue_depth == 0, "bob's first packet handled", 15.0)
        feed(arrival_order([(ALICE, p) for p in alice if 0.5 <= p.received_at < released_at]
                           + [(BOB, p) for p in bob[1:] if p.received_at < released_at]))
        wait_until(lambda: sink.stats().queue_depth == 0, "the starved packets handled", 15.0)
        starved = sink.stats()
        assert starved.failure is None, starved.failure
        assert starved.untracked == sum(1 for p in bob if p.received_at < released_at)
        assert not (tmp_path / "rec" / f"{BOB}.wav").exists()
    # Descriptors are back; both talk on.
    feed(arrival_order([(ALICE, p) for p in alice if p.received_at >= released_at]
                       + [(BOB, p) for p in bob if p.received_at >= released_at]))
    clock.now = END
    sink.close()
    stats = sink.stats()
    assert stats.failure is None, stats.failure
    dropped = sum(1 for p in bob if p.received_at < released_at)
    assert stats.untracked == dropped and stats.per_user[BOB].packets == len(bob) - dropped

    got = {int(p.stem): sf.read(p, dtype="int16")[0] for p in (tmp_path / "rec").glob("*.wav")}
    assert sorted(got) == [ALICE, BOB], "bob's track exists once descriptors are back"
    assert len(got[ALICE]) == len(got[BOB]) == round(END * 48_000), "tracks aligned and of equal length"
    # Alice lost nothing: her track is what she records alone.
    alone = _reference(tmp_path / "alice-alone", [(ALICE, p) for p in alice])
    assert np.array_equal(got[ALICE], alone[ALICE])
    # Bob's track is silence up to his file's creation, then everything he said after, in place.
    later = _reference(tmp_path / "bob-later", [(BOB, p) for p in bob if p.received_at >= released_at])
    assert np.array_equal(got[BOB], later[BOB])
    assert not got[BOB][: round(released_at * 48_000)].any()


def test_no_room_for_a_new_speakers_header_loses_only_that_speaker(tmp_path: pathlib.Path) -> None:
    """ENOSPC while a file is created (its header): no zero-byte file, and no failed recording."""
    clock = FakeClock(0.0)
    (tmp_path / f"{BOB}.wav").symlink_to("/dev/full")
    sink = AudioSink(tmp_path, clock=clock)
    alice = _alice()
    for p in alice:
        clock.now = p.received_at
        assert sink.write(ALICE, p)
        if p is alice[20]:
            assert sink.write(BOB, _bob()[0])
    clock.now = END
    sink.close()
    stats = sink.stats()
    assert stats.failure is None and stats.untracked == 1, stats
    assert np.array_equal(sf.read(tmp_path / f"{ALICE}.wav", dtype="int16")[0],
                          _reference(tmp_path / "alone", [(ALICE, p) for p in alice])[ALICE])
    # The link that made the header fail is gone; at close the track was created, silent, full length.
    bob_track = tmp_path / f"{BOB}.wav"
    assert not bob_track.is_symlink()
    audio = sf.read(bob_track, dtype="int16")[0]
    assert len(audio) == round(END * 48_000) and not audio.any()


def test_a_write_to_an_open_track_on_a_full_disk_still_stops_the_recording(tmp_path: pathlib.Path) -> None:
    """The other side of the line: the disk filling under files already open is fatal, as before."""
    with tmpfs(tmp_path / "disk", "64k") as disk:
        clock = FakeClock(0.0)
        sink = AudioSink(disk, clock=clock)
        for p in _alice():
            clock.now = p.received_at
            assert sink.write(ALICE, p)
        clock.now = END
        sink.close()
        failure = sink.stats().failure
        assert failure is not None and failure.errno == errno.ENOSPC, failure
        # What reached the disk is a valid WAV.
        assert sf.info(disk / f"{ALICE}.wav").frames > 0
