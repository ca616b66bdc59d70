"""A mixdown longer than 4 GiB of audio is a valid RF64 file, as the tracks are; short ones stay plain RIFF.

No 4 GiB is written: the mixdown's header for such a length goes in front of a sparse file of
that length, and libsndfile (soundfile) must read it as the right number of frames.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from bot.web.exports import mixdown_chunks, mixdown_size
from tests.bot.wavgen import tone, write_wav

RATE = 48000


def _mix_header(tmp_path: Path, frames: int, channels: int) -> bytes:
    """The header mixdown_chunks sends for a mix of ``frames`` frames (read off a track that long)."""
    track = tmp_path / "long.wav"
    # A real WAV header claiming ``frames`` frames over a sparse file of the right length:
    # what the mixdown reads its length from, without writing gigabytes.
    data = frames * channels * 2
    with open(track, "wb") as f:
        f.write(_head_for(frames, channels))
        f.truncate(f.tell() + data)
    chunks = mixdown_chunks(tmp_path, ["long.wav"], RATE, channels)
    try:
        return bytes(next(chunks))
    finally:
        chunks.close()


def _head_for(frames: int, channels: int) -> bytes:
    """An RF64 track header as libsndfile reads it (a plain RIFF one cannot state > 4 GiB)."""
    data = frames * channels * 2
    return (b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
            + b"ds64" + struct.pack("<IQQQI", 28, 72 + data, data, frames, 0)
            + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, channels, RATE, RATE * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


def test_a_mix_over_4_gib_is_rf64_with_its_64_bit_sizes(tmp_path: Path) -> None:
    frames = (5 << 30) // 4 + 7  # 5 GiB and a bit of stereo audio
    header = _mix_header(tmp_path, frames, 2)
    data = frames * 4
    assert len(header) + data == mixdown_size(tmp_path, ["long.wav"], RATE, 2)
    assert header[:4] == b"RF64" and header[8:12] == b"WAVE"
    assert header[12:16] == b"ds64"
    riff64, data64, samples = struct.unpack_from("<QQQ", header, 20)
    assert (riff64, data64, samples) == (len(header) - 8 + data, data, frames)
    # libsndfile reads the mix's header over a sparse body of that length as the right frame count.
    mix = tmp_path / "mix.wav"
    with open(mix, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data)
    info = sf.info(str(mix))
    assert (info.frames, info.channels, info.samplerate) == (frames, 2, RATE)


def test_a_short_mix_is_plain_riff_and_sample_exact(tmp_path: Path) -> None:
    a = write_wav(tmp_path / "a.wav", tone(440, 1.5))
    b = write_wav(tmp_path / "b.wav", tone(660, 1.0, amplitude=0.4))
    body = b"".join(mixdown_chunks(tmp_path, [a.name, b.name], RATE, 1))
    assert body[:4] == b"RIFF" and len(body) == mixdown_size(tmp_path, [a.name, b.name], RATE, 1)
    mixed, rate = sf.read(io.BytesIO(body), dtype="int16")
    expected = tone(440, 1.5).astype(np.int32)
    expected[: len(tone(660, 1.0))] += tone(660, 1.0, amplitude=0.4)
    assert rate == RATE
    np.testing.assert_array_equal(mixed, np.clip(expected, -32768, 32767).astype(np.int16))
