"""Derived downloads, produced chunk by chunk so no track is ever held in memory:
a stored ZIP of every track, a mixed-down WAV and FLAC copies.

These functions block; the web server runs them in a thread executor. Streams
go to a ``write(bytes)`` callable (see :mod:`bot.web.streaming`).
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from bot.web.files import open_servable

__all__ = ["CHUNK_BYTES", "MIX_FRAMES", "flac_copy", "mixdown_size", "write_mixdown", "write_zip"]

_log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MIX_FRAMES = 1 << 16

Write = Callable[[bytes], object]


class _Sink:
    """A write-only file object for :class:`zipfile.ZipFile` that batches small
    writes (headers) into fewer, larger chunks."""

    __slots__ = ("_write", "_buffer")

    def __init__(self, write: Write) -> None:
        self._write = write
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._write(bytes(self._buffer))
            self._buffer.clear()


def write_zip(directory: Path, names: list[str], write: Write) -> None:
    """Stream a stored (uncompressed: audio barely compresses) ZIP of ``names``.
    Members over 4 GiB get ZIP64 records; nothing is read whole or copied to a
    temporary file."""
    sink = _Sink(write)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in names:
            src, st = open_servable(directory / name)
            info = zipfile.ZipInfo(name, time.localtime(st.st_mtime)[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = st.st_size
            with src, zf.open(info, "w") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    dst.write(chunk)
    sink.flush()


def _mix_inputs(directory: Path, names: list[str], rate: int, channels: int) -> list[Path]:
    paths = []
    for name in names:
        info = sf.info(str(directory / name))
        if info.samplerate != rate or info.channels != channels:
            _log.warning("%s: %s is %d Hz/%d ch, not %d Hz/%d ch; left out of the mix",
                         directory.name, name, info.samplerate, info.channels, rate, channels)
            continue
        paths.append(directory / name)
    return paths


def mixdown_size(directory: Path, names: list[str], rate: int, channels: int) -> int:
    """Byte length of the WAV :func:`write_mixdown` produces (for Content-Length)."""
    frames = max((sf.info(str(p)).frames for p in _mix_inputs(directory, names, rate, channels)), default=0)
    return 44 + frames * channels * 2


def _wav_header(frames: int, rate: int, channels: int) -> bytes:
    data = frames * channels * 2
    # Beyond 4 GiB the size fields saturate, which players treat as "read to the end".
    riff = min(36 + data, 0xFFFFFFFF)
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, channels, rate,
        rate * channels * 2, channels * 2, 16, b"data", min(data, 0xFFFFFFFF),
    )


def write_mixdown(directory: Path, names: list[str], rate: int, channels: int, write: Write) -> None:
    """Stream a 16-bit WAV that is the sample-wise sum of the tracks, clipped to
    int16, as long as the longest track (shorter ones count as silence)."""
    paths = _mix_inputs(directory, names, rate, channels)
    files = [sf.SoundFile(str(p)) for p in paths]
    try:
        frames = max((f.frames for f in files), default=0)
        write(_wav_header(frames, rate, channels))
        acc = np.empty((MIX_FRAMES, channels), dtype=np.int32)
        done = 0
        while done < frames:
            n = min(MIX_FRAMES, frames - done)
            acc[:n] = 0
            for f in files:
                block = f.read(n, dtype="int16", always_2d=True)
                acc[: len(block)] += block
            np.clip(acc[:n], -32768, 32767, out=acc[:n])
            write(acc[:n].astype("<i2").tobytes())
            done += n
    finally:
        for f in files:
            f.close()


def flac_copy(wav: Path, flac: Path) -> Path:
    """Make ``flac`` from ``wav`` (lossless 16-bit) unless it is already newer;
    written under a temporary name and renamed so readers never see half."""
    try:
        # lstat: a symlink planted under the FLAC's name is replaced, never served.
        cached = os.lstat(flac)
        if stat.S_ISREG(cached.st_mode) and cached.st_mtime_ns >= wav.stat().st_mtime_ns:
            return flac
    except FileNotFoundError:
        pass
    tmp = flac.with_name(f".{flac.name}.{os.getpid()}.tmp")
    try:
        with sf.SoundFile(str(wav)) as src, sf.SoundFile(
            str(tmp), "w", samplerate=src.samplerate, channels=src.channels, format="FLAC", subtype="PCM_16"
        ) as dst:
            for block in src.blocks(blocksize=MIX_FRAMES, dtype="int16", always_2d=True):
                dst.write(block)
        os.replace(tmp, flac)
    finally:
        tmp.unlink(missing_ok=True)
    return flac
