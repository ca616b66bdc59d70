"""Derived downloads, produced chunk by chunk so no track is ever held in memory:
a stored ZIP of every track, a mixed-down WAV and FLAC copies.

The streams are generators of byte chunks: each ``next()`` does a little
blocking disk work, so the web server runs it in a thread executor and sends
the chunk from the event loop (see :mod:`bot.web.streaming`); no thread waits
on a client. ``flac_copy`` blocks as a whole.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import zipfile
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import soundfile as sf

from bot.web.files import open_servable
from sinks.wavfile import HEADER_SIZE, wav_header

__all__ = ["CHUNK_BYTES", "MIX_FRAMES", "flac_copy", "mixdown_chunks", "mixdown_size", "write_zip", "zip_chunks"]

_log = logging.getLogger(__name__)

# A download being sent holds a few copies of one chunk (the chunk, aiohttp's
# chunked framing, the socket's write buffer): small enough for hundreds of
# downloads at once, large enough that the per-chunk hop to a thread costs little.
CHUNK_BYTES = 1 << 16
MIX_FRAMES = 1 << 16

Chunks = Generator[bytes | bytearray, None, None]


class _Buffer:
    """A write-only file object for :class:`zipfile.ZipFile`; what it was
    given is taken out in one piece (not copied) by the generator."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, data: bytes) -> int:
        self._data += data
        return len(data)

    def flush(self) -> None:
        """Nothing to do: :meth:`take` hands the bytes on."""

    def take(self) -> bytearray:
        """Everything written since the last call."""
        data, self._data = self._data, bytearray()
        return data


def zip_chunks(directory: Path, names: list[str]) -> Chunks:
    """A stored (uncompressed: audio barely compresses) ZIP of ``names``, in
    chunks of about :data:`CHUNK_BYTES`. Members over 4 GiB get ZIP64 records;
    nothing is read whole or copied to a temporary file."""
    out = _Buffer()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in names:
            src, st = open_servable(directory / name)
            info = zipfile.ZipInfo(name, time.localtime(st.st_mtime)[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = st.st_size
            with src, zf.open(info, "w") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    dst.write(chunk)
                    del chunk  # a suspended download holds only what it yielded
                    yield out.take()
    if tail := out.take():  # the last member's descriptor and the central directory
        yield tail


def write_zip(directory: Path, names: list[str], write: Callable[[bytearray], object]) -> None:
    """Write the ZIP :func:`zip_chunks` makes to ``write`` (a file's, say)."""
    for chunk in zip_chunks(directory, names):
        write(chunk)


def _mix_inputs(directory: Path, names: list[str], rate: int, channels: int) -> list[Path]:
    paths = []
    for name in names:
        try:
            info = sf.info(str(directory / name))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            # One unreadable track (a file a full disk left without its header) must not
            # take the whole mix down with it: the others are still worth hearing.
            _log.warning("%s: %s is not a readable WAV (%s); left out of the mix", directory.name, name,
                         type(exc).__name__)
            continue
        if info.samplerate != rate or info.channels != channels:
            _log.warning("%s: %s is %d Hz/%d ch, not %d Hz/%d ch; left out of the mix",
                         directory.name, name, info.samplerate, info.channels, rate, channels)
            continue
        paths.append(directory / name)
    return paths


def mixdown_size(directory: Path, names: list[str], rate: int, channels: int) -> int:
    """Byte length of the WAV :func:`mixdown_chunks` produces (for Content-Length)."""
    frames = max((sf.info(str(p)).frames for p in _mix_inputs(directory, names, rate, channels)), default=0)
    return HEADER_SIZE + frames * channels * 2


def _wav_header(frames: int, rate: int, channels: int) -> bytes:
    # The tracks' own layout: RF64 with 64-bit sizes past 4 GiB, so a long mix
    # is a valid file rather than one whose sizes are pinned at 0xFFFFFFFF.
    return wav_header(channels, rate, frames * channels * 2)


def _mix_block(files: list[sf.SoundFile], frames: int, channels: int) -> bytes:
    acc = np.zeros((frames, channels), dtype=np.int32)
    for f in files:
        block = f.read(frames, dtype="int16", always_2d=True)
        acc[: len(block)] += block
    return np.clip(acc, -32768, 32767).astype("<i2").tobytes()


def mixdown_chunks(directory: Path, names: list[str], rate: int, channels: int) -> Chunks:
    """A 16-bit WAV that is the sample-wise sum of the tracks, clipped to int16,
    as long as the longest track (shorter ones count as silence), in chunks of
    :data:`MIX_FRAMES` frames. Between chunks it holds open files only, no
    buffers (a download waiting on its client may wait long)."""
    paths = _mix_inputs(directory, names, rate, channels)
    files = [sf.SoundFile(str(p)) for p in paths]
    try:
        frames = max((f.frames for f in files), default=0)
        yield _wav_header(frames, rate, channels)
        for done in range(0, frames, MIX_FRAMES):
            yield _mix_block(files, min(MIX_FRAMES, frames - done), channels)
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
