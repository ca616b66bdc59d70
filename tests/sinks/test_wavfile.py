"""The crash-safe WAV writer and repair_wav, on real files read back by real readers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.wavfile import (
    HEADER_SIZE,
    RIFF_MAX_DATA,
    RepairReport,
    WavFormatError,
    WavWriteError,
    WavWriter,
    repair_directory,
    repair_wav,
)

_REPO = Path(__file__).resolve().parents[2]
_CHILD_TIMEOUT = 60


def _pattern(start: int, frames: int, channels: int) -> np.ndarray:
    """Deterministic, non-repeating-looking int16 frames ``start .. start+frames``."""
    n = np.arange(start * channels, (start + frames) * channels, dtype=np.int64)
    return ((n * 7919 + 12345) % 65536 - 32768).astype(np.int16).reshape(frames, channels)


def _read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == 48_000
    return data


def _run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(_REPO))
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=_REPO, env=env,
        capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=True,
    )


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_soundfile_reads_every_sample_back(tmp_path: Path, channels: int) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 100_000, channels)
    with WavWriter(path, channels) as writer:
        for start in range(0, len(audio), 960):
            writer.append(audio[start:start + 960])
        assert writer.frames == len(audio)
        assert writer.bytes_written == audio.nbytes
    info = sf.info(path)
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", channels)
    np.testing.assert_array_equal(_read(path), audio)
    assert path.stat().st_size == HEADER_SIZE + audio.nbytes


def test_wave_module_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 4_800, 2)
    with WavWriter(path, 2, 48_000) as writer:
        writer.append(audio)
        writer.append_silence(100)
    with wave.open(str(path), "rb") as reader:
        params = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        assert params == (2, 2, 48_000)
        assert reader.getnframes() == 4_900
        raw = reader.readframes(4_900)
    got = np.frombuffer(raw, dtype="<i2").reshape(-1, 2)
    np.testing.assert_array_equal(got[:4_800], audio)
    assert not got[4_800:].any()


def test_other_layouts_and_byte_orders_are_written_as_little_endian(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 3_000, 2)
    with WavWriter(path, 2) as writer:
        writer.append(np.asfortranarray(audio[:1_000]))
        writer.append(audio[1_000:2_000].astype(">i2"))
        spaced = np.zeros((2_000, 2), dtype=np.int16)
        spaced[::2] = audio[2_000:]
        writer.append(spaced[::2])  # a strided, non-contiguous view
    np.testing.assert_array_equal(_read(path), audio)


def test_mono_accepts_a_flat_array(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 500, 1)
    with WavWriter(path, 1) as writer:
        writer.append(audio[:, 0])
    np.testing.assert_array_equal(_read(path), audio)


def test_bad_samples_are_refused_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 2) as writer:
        with pytest.raises(TypeError, match="a.wav.*int16"):
            writer.append(np.zeros((10, 2), dtype=np.float32))
        with pytest.raises(ValueError, match=r"a.wav.*\(n, 2\)"):
            writer.append(np.zeros((10, 1), dtype=np.int16))
        with pytest.raises(ValueError, match="negative"):
            writer.append_silence(-1)
        writer.append(np.ones((3, 2), dtype=np.int16))
    assert sf.info(path).frames == 3


def test_close_is_idempotent_and_ends_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    writer = WavWriter(path, 1)
    writer.append(_pattern(0, 10, 1))
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.append(_pattern(0, 10, 1))
    with pytest.raises(ValueError, match="closed"):
        writer.sync_header()
    assert sf.info(path).frames == 10


def test_unopenable_path_names_the_file_and_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "a.wav"
    with pytest.raises(WavWriteError) as caught:
        WavWriter(path, 2)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_a_new_writer_is_a_valid_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    writer = WavWriter(path, 2)
    try:
        assert sf.info(path).frames == 0
        assert repair_wav(path).was_valid
    finally:
        writer.close()


# --- crash safety ----------------------------------------------------------------


def test_sync_header_makes_the_open_file_readable(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 200_000, 2)
    with WavWriter(path, 2) as writer:
        writer.append(audio[:48_000])
        writer.sync_header()
        synced = writer.frames
        # More than the write buffer: part of this reaches the file but not the header.
        writer.append(audio[48_000:150_000])
        assert path.stat().st_size > HEADER_SIZE + synced * 4
        assert sf.info(path).frames == synced
        np.testing.assert_array_equal(_read(path), audio[:synced])
        with wave.open(str(path), "rb") as reader:
            assert reader.getnframes() == synced
        writer.append(audio[150_000:])
        writer.sync_header()
        np.testing.assert_array_equal(_read(path), audio)
    np.testing.assert_array_equal(_read(path), audio)


_CRASH_CHILD = """
import os, sys
from sinks.wavfile import WavWriter
from tests.sinks.test_wavfile import _pattern
writer = WavWriter(sys.argv[1], 2)
writer.append(_pattern(0, 30_000, 2))
writer.sync_header()
print(writer.frames, flush=True)
for start in range(30_000, 230_000, 960):
    writer.append(_pattern(start, 960, 2))
os._exit(0)
"""


def test_repair_recovers_every_frame_a_killed_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    synced = int(_run_child(_CRASH_CHILD, str(path)).stdout)
    on_disk = path.stat().st_size
    assert on_disk > HEADER_SIZE + synced * 4  # audio after the last sync reached the file
    assert sf.info(path).frames == synced  # valid as of the last sync, before any repair

    report = repair_wav(path)

    whole = (on_disk - HEADER_SIZE) // 4
    assert report == RepairReport(path, whole, False, on_disk - HEADER_SIZE - whole * 4, "RIFF")
    np.testing.assert_array_equal(_read(path), _pattern(0, whole, 2))
    assert repair_wav(path).was_valid


def _set_sizes(path: Path, riff: int, data: int) -> None:
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", riff))
        f.seek(HEADER_SIZE - 4)
        f.write(struct.pack("<I", data))


@pytest.mark.parametrize("stale", ["zero", "old"])
def test_repair_cuts_a_partial_trailing_frame(tmp_path: Path, stale: str) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 1_000, 2)
    with WavWriter(path, 2) as writer:
        writer.append(audio)
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")  # three bytes of a fourth-byte frame
    if stale == "zero":
        _set_sizes(path, 0, 0)
    else:
        _set_sizes(path, HEADER_SIZE - 8 + 400, 400)

    report = repair_wav(path)

    assert report == RepairReport(path, 1_000, False, 3, "RIFF")
    assert path.stat().st_size == HEADER_SIZE + audio.nbytes
    np.testing.assert_array_equal(_read(path), audio)


def test_repair_fixes_a_header_claiming_more_than_the_file_has(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 1) as writer:
        writer.append(_pattern(0, 1_000, 1))
    _set_sizes(path, 10_000_000, 10_000_000 - 72)
    report = repair_wav(path)
    assert (report.frames, report.was_valid, report.truncated_bytes) == (1_000, False, 0)
    np.testing.assert_array_equal(_read(path), _pattern(0, 1_000, 1))


def test_repair_leaves_a_valid_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 2) as writer:
        writer.append(_pattern(0, 777, 2))
    before = path.read_bytes()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert repair_wav(path) == RepairReport(path, 777, True, 0, "RIFF")
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "too short"),
        (b"RIFF\x00\x00", "too short"),
        (b"ID3\x03" + bytes(200), "not a WAV"),
        (b"RIFF" + bytes(4) + b"WAVE" + b"fmt ", "no data chunk"),
        (b"RIFF" + bytes(4) + b"WAVE" + b"data" + bytes(20), "before any fmt"),
    ],
)
def test_repair_refuses_what_is_not_a_wav(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(WavFormatError, match=reason) as caught:
        repair_wav(path)
    assert isinstance(caught.value, ValueError)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content


def test_repair_directory_repairs_each_wav_and_skips_garbage(tmp_path: Path) -> None:
    for name, frames in (("a.wav", 100), ("b.wav", 200)):
        with WavWriter(tmp_path / name, 1) as writer:
            writer.append(_pattern(0, frames, 1))
    _set_sizes(tmp_path / "b.wav", 0, 0)
    (tmp_path / "c.wav").write_bytes(b"not audio at all")
    (tmp_path / "notes.txt").write_bytes(b"RIFF")

    reports = repair_directory(tmp_path)

    assert reports == [
        RepairReport(tmp_path / "a.wav", 100, True, 0, "RIFF"),
        RepairReport(tmp_path / "b.wav", 200, False, 0, "RIFF"),
    ]
    assert sf.info(tmp_path / "b.wav").frames == 200


# --- RF64 --------------------------------------------------------------------------


def _ds64(path: Path) -> tuple[object, ...]:
    """The RF64 header fields, in file order, and the data chunk's 32-bit size."""
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
    magic, riff, wave_id, ds64_id, size, big_riff, big_data, count, table = struct.unpack_from(
        "<4sI4s4sIQQQI", head
    )
    data_field = struct.unpack_from("<I", head, HEADER_SIZE - 4)[0]
    return magic, riff, wave_id, ds64_id, size, big_riff, big_data, count, table, data_field


def test_passing_the_threshold_rewrites_the_header_as_rf64_in_place(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    audio = _pattern(0, 40_000, 2)  # 160 000 bytes, past a 64 KiB threshold
    with WavWriter(path, 2, rf64_threshold=64 * 1024) as writer:
        writer.append(audio[:10_000])
        writer.sync_header()
        assert path.read_bytes()[:4] == b"RIFF"
        writer.append(audio[10_000:30_000])
        writer.sync_header()
        assert path.read_bytes()[:4] == b"RF64"
        np.testing.assert_array_equal(_read(path), audio[:30_000])  # readable mid-recording
        writer.append(audio[30_000:])

    assert _ds64(path) == (
        b"RF64", 0xFFFFFFFF, b"WAVE", b"ds64", 28,
        HEADER_SIZE - 8 + audio.nbytes, audio.nbytes, 40_000, 0, 0xFFFFFFFF,
    )
    assert path.read_bytes()[HEADER_SIZE:HEADER_SIZE + 8] == audio[:2].tobytes()  # no audio moved
    info = sf.info(path)
    assert (info.format, info.frames) == ("RF64", 40_000)
    np.testing.assert_array_equal(_read(path), audio)
    assert repair_wav(path) == RepairReport(path, 40_000, True, 0, "RF64")


def test_repair_of_an_rf64_file_caught_mid_write(tmp_path: Path) -> None:
    path, crashed = tmp_path / "a.wav", tmp_path / "crashed.wav"
    audio = _pattern(0, 150_000, 2)
    with WavWriter(path, 2, rf64_threshold=64 * 1024) as writer:
        writer.append(audio[:20_000])
        writer.sync_header()
        writer.append(audio[20_000:])  # far more than the buffer: most reaches the file
        # What a crash right now would leave behind is exactly the file as it stands.
        shutil.copyfile(path, crashed)
    with open(crashed, "ab") as f:
        f.write(b"\x07")  # and a torn last write
    on_disk = crashed.stat().st_size
    assert sf.info(crashed).frames == 20_000

    report = repair_wav(crashed)

    whole = (on_disk - HEADER_SIZE) // 4
    assert whole > 20_000
    assert report == RepairReport(crashed, whole, False, on_disk - HEADER_SIZE - whole * 4, "RF64")
    assert _ds64(crashed)[5:8] == (HEADER_SIZE - 8 + whole * 4, whole * 4, whole)
    np.testing.assert_array_equal(_read(crashed), audio[:whole])


def test_repair_switches_a_file_past_4_gib_to_rf64(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    audio = _pattern(0, 1_000, 2)
    with WavWriter(path, 2) as writer:
        writer.append(audio)
    length = HEADER_SIZE + RIFF_MAX_DATA + 4_097  # past the RIFF limit, then a partial frame
    os.truncate(path, length)  # sparse: the unwritten tail costs no disk
    assert path.stat().st_blocks * 512 < 1 << 20

    report = repair_wav(path)

    data = (length - HEADER_SIZE) // 4 * 4
    assert length - HEADER_SIZE - data == 3
    assert report == RepairReport(path, data // 4, False, 3, "RF64")
    assert path.stat().st_size == HEADER_SIZE + data
    assert _ds64(path)[:8] == (
        b"RF64", 0xFFFFFFFF, b"WAVE", b"ds64", 28, HEADER_SIZE - 8 + data, data, data // 4,
    )
    info = sf.info(path)
    assert (info.format, info.frames) == ("RF64", data // 4)
    head, _ = sf.read(path, frames=1_000, dtype="int16")
    np.testing.assert_array_equal(head, audio)


def test_threshold_beyond_the_riff_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rf64_threshold"):
        WavWriter(tmp_path / "a.wav", 2, rf64_threshold=RIFF_MAX_DATA + 1)


# --- write errors ---------------------------------------------------------------------

_LIMIT = 300_002  # not a whole number of frames past the header
_DISK_FULL_CHILD = f"""
import json, resource, signal, sys
from sinks.wavfile import WavWriteError, WavWriter
from tests.sinks.test_wavfile import _pattern
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({_LIMIT}, {_LIMIT}))
writer = WavWriter(sys.argv[1], 2)
synced, result = 0, None
for i in range(200):
    try:
        writer.append(_pattern(i * 960, 960, 2))
        if i % 10 == 9:
            writer.sync_header()
            synced = writer.frames
    except WavWriteError as exc:
        result = dict(errno=exc.errno, message=str(exc), path=str(exc.path), synced=synced)
        break
try:
    writer.sync_header()
except WavWriteError as exc:
    result["again"] = str(exc)
print(json.dumps(result), flush=True)
sys.stdin.readline()
writer.close()
writer.close()
print("closed", flush=True)
"""


def test_a_full_disk_names_the_file_and_keeps_it_valid(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", _DISK_FULL_CHILD, str(path)], cwd=_REPO,
        env=dict(os.environ, PYTHONPATH=str(_REPO)), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        result = json.loads(child.stdout.readline())
        assert result["errno"] == errno.EFBIG
        assert result["message"] == f"[Errno {errno.EFBIG}] {path}: File too large"
        assert result["path"] == str(path)
        assert "failed earlier" in result["again"] and str(path) in result["again"]
        synced = result["synced"]
        assert synced > 0
        # While the writer still holds the file: valid as of the last successful sync.
        assert path.stat().st_size > HEADER_SIZE + synced * 4
        np.testing.assert_array_equal(_read(path), _pattern(0, synced, 2))

        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "closed\n"
        assert child.wait(timeout=_CHILD_TIMEOUT) == 0, child.stderr.read() if child.stderr else ""
    finally:
        child.kill()
        child.wait()
    # close() kept every whole frame that reached the file, and wrote a true header.
    whole = (_LIMIT - HEADER_SIZE) // 4
    assert path.stat().st_size == HEADER_SIZE + whole * 4
    np.testing.assert_array_equal(_read(path), _pattern(0, whole, 2))
    assert repair_wav(path).was_valid


# --- silence ---------------------------------------------------------------------------


def test_a_long_silence_is_written_without_allocating_it(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    gap = 48_000 * 600  # ten minutes
    writer = WavWriter(path, 1)
    writer.append(_pattern(0, 10, 1))
    tracemalloc.start()
    try:
        writer.append_silence(gap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    writer.append(_pattern(10, 10, 1))
    writer.close()
    assert peak < 64 * 1024, f"peak {peak} bytes for a {gap * 2}-byte gap"
    assert sf.info(path).frames == gap + 20
    samples = np.memmap(path, dtype="<i2", mode="r", offset=HEADER_SIZE)
    np.testing.assert_array_equal(samples[:10], _pattern(0, 10, 1)[:, 0])
    np.testing.assert_array_equal(samples[-10:], _pattern(10, 10, 1)[:, 0])
    assert not samples[10:-10].any()
    del samples


# --- property: whatever the sequence, the file holds exactly what was appended ---------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 4_000)),
        st.tuples(st.just("silence"), st.integers(0, 80_000)),
        st.tuples(st.just("sync"), st.just(0)),
    ),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS, channels=st.integers(1, 2), threshold=st.sampled_from([RIFF_MAX_DATA, 64 * 1024]))
def test_file_holds_the_concatenation_of_every_append(
    tmp_path: Path, ops: list[tuple[str, int]], channels: int, threshold: int
) -> None:
    path = tmp_path / "p.wav"
    expected: list[np.ndarray] = []
    frames = 0
    with WavWriter(path, channels, rf64_threshold=threshold) as writer:
        for op, n in ops:
            if op == "sync":
                writer.sync_header()
                assert sf.info(path).frames == frames
                continue
            if op == "append":
                chunk = _pattern(frames, n, channels)
                writer.append(chunk)
            else:
                chunk = np.zeros((n, channels), dtype=np.int16)
                writer.append_silence(n)
            expected.append(chunk)
            frames += n
            assert writer.frames == frames
    want = np.concatenate(expected) if expected else np.zeros((0, channels), dtype=np.int16)
    assert path.read_bytes()[:4] == (b"RF64" if want.nbytes > threshold else b"RIFF")
    assert path.stat().st_size == HEADER_SIZE + want.nbytes
    np.testing.assert_array_equal(_read(path), want)
    assert repair_wav(path).was_valid
