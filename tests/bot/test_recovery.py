"""Closing what a crash or a failed stop left open (when it is not resumed): stale WAV
headers repaired, tracks named, the stop's own manifest kept when it got that far."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bot.recovery import close_unfinished
from bot.storage import Manifest, StorageError
from tests.bot.conftest import IndexUnderTest
from tests.bot.recovering import recover
from tests.bot.wavgen import read_wav, tone, write_wav

GUILD_A = 111111111111111111
ALICE, BOB = 1234567890, 9876543210


def _stale_header(path: Path, how: str) -> None:
    """Make the header look like the process died before finalizing it."""
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    if how == "zeroed":
        raw[4:8] = b"\0\0\0\0"
        raw[data_at + 4 : data_at + 8] = b"\0\0\0\0"
    elif how == "truncated":  # sizes from an early header refresh, much audio appended since
        raw[4:8] = struct.pack("<I", data_at + 4 + 960)
        raw[data_at + 4 : data_at + 8] = struct.pack("<I", 960)
    raw += b"\x07"  # half a sample written when the process died
    path.write_bytes(bytes(raw))


def test_recover_crashed_recording(tmp_path: Path, index: IndexUnderTest) -> None:
    root = tmp_path / "rec"
    alice, bob = tone(440, 1.0), tone(660, 0.7)
    with index.open(root) as s:
        crashed = s.create(GUILD_A, "A", 5, "vc")
        done = s.create(GUILD_A, "A", 5, "vc")
        s.finish(done.id, s.new_manifest(done))
        s.note_speaker(crashed.id, ALICE, "Alice")  # Bob was never named before the crash
        write_wav(crashed.directory / f"{ALICE}.wav", alice)
        write_wav(crashed.directory / f"{BOB}.wav", bob)
    _stale_header(crashed.directory / f"{ALICE}.wav", "zeroed")
    _stale_header(crashed.directory / f"{BOB}.wav", "truncated")
    assert sf.info(str(crashed.directory / f"{BOB}.wav")).frames == 480  # stale header: 10 ms of 700

    with index.open(root) as s:  # the restarted bot
        recovered = recover(s)
        assert [r.id for r in recovered] == [crashed.id]
        assert recovered[0].status == "interrupted" and recovered[0].ended_at is not None
        assert s.get(done.id).status == "finished"
        manifest = Manifest.read(crashed.directory)
        assert manifest.status == "interrupted"
        files = {sp.user_id: sp.file for sp in manifest.speakers}
        assert files == {ALICE: f"alice-{ALICE}.wav", BOB: f"speaker-{BOB}.wav"}
        np.testing.assert_array_equal(read_wav(crashed.directory / files[ALICE]), alice)
        np.testing.assert_array_equal(read_wav(crashed.directory / files[BOB]), bob)
        assert all(sp.packets is None and sp.talk_seconds is None for sp in manifest.speakers)
        assert recover(s) == []  # nothing left to recover


def test_recover_leaves_garbage_alone(tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "r") as s:
        rec = s.create(GUILD_A, "A", 5, "vc")
        (rec.directory / f"{ALICE}.wav").write_bytes(b"not a wav at all")
        (recovered,) = recover(s)
        assert recovered.status == "interrupted"
        # Kept (not ours to delete), but never listed as a track: nothing could read it.
        assert (rec.directory / f"{ALICE}.wav").read_bytes() == b"not a wav at all"
        assert s.read_manifest(recovered).speakers == []


def test_recover_engine_written_track(tmp_path: Path, index: IndexUnderTest) -> None:
    """A track in the engine's own layout (80-byte header with a JUNK reserve)
    whose sizes still say what the last header sync said."""
    from sinks.wavfile import WavWriter

    audio = tone(523, 0.8).reshape(-1, 1)
    with index.open(tmp_path / "r") as s:
        rec = s.create(GUILD_A, "A", 5, "vc")
        s.note_speaker(rec.id, ALICE, "Alice")
        with WavWriter(rec.directory / f"{ALICE}.wav", channels=1) as writer:
            writer.append(audio)
        _stale_header(rec.directory / f"{ALICE}.wav", "truncated")
        assert sf.info(str(rec.directory / f"{ALICE}.wav")).frames == 480
        (recovered,) = recover(s)
        assert recovered.id == rec.id and recovered.status == "interrupted"
        np.testing.assert_array_equal(read_wav(rec.directory / f"alice-{ALICE}.wav"), audio[:, 0])


def test_a_stop_finishing_again_is_harmless_and_close_unfinished_repairs_an_undescribed_one(
        tmp_path: Path, index: IndexUnderTest) -> None:
    alice, bob = tone(440, 0.8), tone(660, 0.5)
    with index.open(tmp_path / "rec") as s:
        # The stop described this one before the index refused it.
        described = s.create(GUILD_A, "A", 5, "vc")
        s.note_speaker(described.id, ALICE, "Alice")
        write_wav(described.directory / f"{ALICE}.wav", alice)
        manifest = s.new_manifest(described)
        manifest.speakers[0].talk_seconds = 0.75
        # The stop failed before describing this one; its header is as a crash leaves it.
        undescribed = s.create(GUILD_A, "A", 5, "vc")
        write_wav(undescribed.directory / f"{BOB}.wav", bob)
        _stale_header(undescribed.directory / f"{BOB}.wav", "zeroed")

        final = s.finish(described.id, manifest)
        assert final.status == "finished" and s.get(described.id).status == "finished"
        written = Manifest.read(described.directory)
        assert [(sp.file, sp.talk_seconds) for sp in written.speakers] == [(f"alice-{ALICE}.wav", 0.75)]
        # A retried stop describes it again from the index, its tracks renamed already: nothing changes.
        again = s.new_manifest(described)
        again.speakers[0].talk_seconds = 0.75
        assert s.finish(described.id, again).speakers == final.speakers
        np.testing.assert_array_equal(read_wav(described.directory / f"alice-{ALICE}.wav"), alice)

        repaired = close_unfinished(s, undescribed.id)
        assert repaired.status == "interrupted" and s.get(undescribed.id).status == "interrupted"
        np.testing.assert_array_equal(read_wav(undescribed.directory / f"speaker-{BOB}.wav"), bob)

        assert s.delete(described.id)
        with pytest.raises(StorageError):
            close_unfinished(s, described.id)


def test_recover_finishes_a_stopped_recording_whose_index_update_failed(
        tmp_path: Path, index: IndexUnderTest) -> None:
    root = tmp_path / "rec"
    alice = tone(440, 0.6)
    with index.open(root) as s:
        stopped = s.create(GUILD_A, "A", 5, "vc")
        s.note_speaker(stopped.id, ALICE, "Alice")
        write_wav(stopped.directory / f"{ALICE}.wav", alice)
        manifest = s.new_manifest(stopped)
        manifest.speakers[0].talk_seconds = 0.5
        s.finish(stopped.id, manifest)
        # What finish() leaves when its last step, the index update, fails: all but the status.
        index.execute(s, "UPDATE recordings SET status = 'recording', ended_at = NULL WHERE id = ?", (stopped.id,))

    with index.open(root) as s:  # the restarted bot
        recovered = recover(s)
        assert [(r.id, r.status) for r in recovered] == [(stopped.id, "finished")]
        kept = Manifest.read(stopped.directory)
        assert kept.status == "finished"
        assert [(sp.file, sp.talk_seconds) for sp in kept.speakers] == [(f"alice-{ALICE}.wav", 0.5)]
        np.testing.assert_array_equal(read_wav(stopped.directory / f"alice-{ALICE}.wav"), alice)
        assert recover(s) == []
