"""Derived downloads, produced chunk by chunk so no track is ever held in memory:
a stored ZIP of files already on disk, and a mixed-down WAV.

The streams are generators of byte chunks: each ``next()`` does a little
blocking disk work, so the web server runs it in a thread executor and sends
the chunk from the event loop (see :mod:`bot.web.streaming`); no thread waits
on a client. Encoded formats are made by :mod:`bot.web.encode`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import soundfile as sf

from bot.web.zipstream import ZipMember, zip_length, zip_stream
from sinks.wavfile import HEADER_SIZE, wav_header

__all__ = ["CHUNK_BYTES", "MIX_FRAMES", "mix_block", "mix_inputs", "mixdown_chunks", "mixdown_size", "write_zip",
           "zip_chunks", "zip_members"]

_log = logging.getLogger(__name__)

# A download being sent holds a few copies of one chunk (the chunk, aiohttp's
# chunked framing, the socket's write buffer): small enough for hundreds of
# downloads at once, large enough that the per-chunk hop to a thread costs little.
CHUNK_BYTES = 1 << 16
MIX_FRAMES = 1 << 16

Chunks = Generator[bytes | bytearray, None, None]


def zip_members(directory: Path, files: dict[str, str]) -> list[ZipMember]:
    """The ZIP members for ``files`` (name in the archive -> file in ``directory``), as
    they are on disk now. Raises OSError when one is missing or not a regular file."""
    return [ZipMember.of(directory / file, name) for name, file in files.items()]


def zip_chunks(members: list[ZipMember]) -> tuple[int, Chunks]:
    """A stored ZIP of ``members``: its exact length, and its bytes in chunks of at most
    :data:`CHUNK_BYTES`. Audio barely compresses, and stored members make the length
    computable before the first byte, so the browser can show progress."""
    return zip_length(members), zip_stream(members, CHUNK_BYTES)


def write_zip(members: list[ZipMember], write: Callable[[bytes], object]) -> None:
    """Write the ZIP :func:`zip_chunks` makes to ``write`` (a file's, say)."""
    for chunk in zip_chunks(members)[1]:
        write(chunk)


def mix_inputs(directory: Path, names: list[str], rate: int, channels: int) -> list[Path]:
    """The tracks of ``names`` that can be mixed: readable, of the recording's rate and channels."""
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
    frames = max((sf.info(str(p)).frames for p in mix_inputs(directory, names, rate, channels)), default=0)
    return HEADER_SIZE + frames * channels * 2


def _wav_header(frames: int, rate: int, channels: int) -> bytes:
    # The tracks' own layout: RF64 with 64-bit sizes past 4 GiB, so a long mix
    # is a valid file rather than one whose sizes are pinned at 0xFFFFFFFF.
    return wav_header(channels, rate, frames * channels * 2)


def mix_block(files: list[sf.SoundFile], frames: int, channels: int) -> np.ndarray:
    """The next ``frames`` frames of every file, summed and clipped to int16."""
    acc = np.zeros((frames, channels), dtype=np.int32)
    for f in files:
        block = f.read(frames, dtype="int16", always_2d=True)
        acc[: len(block)] += block
    return np.clip(acc, -32768, 32767).astype("<i2")


def mixdown_chunks(directory: Path, names: list[str], rate: int, channels: int) -> Chunks:
    """A 16-bit WAV that is the sample-wise sum of the tracks, clipped to int16,
    as long as the longest track (shorter ones count as silence), in chunks of
    :data:`MIX_FRAMES` frames. Between chunks it holds open files only, no
    buffers (a download waiting on its client may wait long)."""
    paths = mix_inputs(directory, names, rate, channels)
    files = [sf.SoundFile(str(p)) for p in paths]
    try:
        frames = max((f.frames for f in files), default=0)
        yield _wav_header(frames, rate, channels)
        for done in range(0, frames, MIX_FRAMES):
            yield mix_block(files, min(MIX_FRAMES, frames - done), channels).tobytes()
    finally:
        for f in files:
            f.close()
