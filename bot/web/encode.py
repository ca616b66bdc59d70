"""The download formats and the encoders that make them, with libsndfile.

Pure audio and files: a WAV track (or the mix of several) in, an encoded file
out, block by block so memory stays flat however long the recording, written
under a temporary name and renamed so a crash never leaves half a file where
a finished one is expected. :mod:`bot.web.encoder` decides when and on which
thread this runs.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from bot.web.exports import MIX_FRAMES, mix_block, mix_inputs

__all__ = ["FORMATS", "Format", "Progress", "Wanted", "encode_mix", "encode_track", "format_named", "fresh",
           "mix_name", "track_encodes", "track_name"]

#: Called with the fraction done (0..1) after each block.
Progress = Callable[[float], None]
#: A file to have: its path, the files it is made from, and how to make it at a given path.
Wanted = tuple[Path, list[Path], Callable[[Path, Progress], None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Format:
    """One download format: its URL name, file extension, label, MIME type and libsndfile settings."""

    name: str
    extension: str
    label: str
    mime: str
    container: str
    subtype: str
    lossless: bool


#: In the order the page lists them. Lossy settings are libsndfile's defaults:
#: Opus VBR at libopus's automatic bitrate (64 kbit/s nominal for one channel,
#: far less over silence), MP3 at LAME's default constant bitrate.
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("wav", "wav", "WAV", "audio/wav", "WAV", "PCM_16", True),
    Format("flac", "flac", "FLAC", "audio/flac", "FLAC", "PCM_16", True),
    Format("ogg", "ogg", "Ogg Opus", "audio/ogg", "OGG", "OPUS", False),
    Format("mp3", "mp3", "MP3", "audio/mpeg", "MP3", "MPEG_LAYER_III", False),
)}


def format_named(name: str) -> Format | None:
    """The format called ``name`` in URLs and settings, or None."""
    return FORMATS.get(name)


def track_name(track: str, fmt: Format) -> str:
    """The encoded copy's file name, next to the track: ``alice-1.wav`` -> ``alice-1.flac``."""
    return track.rsplit(".", 1)[0] + "." + fmt.extension


def mix_name(fmt: Format) -> str:
    """The encoded mixdown's file name. Track names always end in ``-<user id>``, so it cannot clash."""
    return "mix." + fmt.extension


def fresh(target: Path, sources: list[Path]) -> bool:
    """True when ``target`` is a regular file (never a symlink) at least as new as every source."""
    try:
        cached = os.lstat(target)
        return stat.S_ISREG(cached.st_mode) and all(cached.st_mtime_ns >= s.stat().st_mtime_ns for s in sources)
    except FileNotFoundError:
        return False


def _writer(path: Path, fmt: Format, rate: int, channels: int) -> sf.SoundFile:
    return sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, format=fmt.container,
                        subtype=fmt.subtype)


def _atomically(target: Path, write: Callable[[Path], None]) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)  # a symlink planted under the target's name is replaced, never written through
    finally:
        tmp.unlink(missing_ok=True)


def encode_track(wav: Path, target: Path, fmt: Format, progress: Progress) -> None:
    """Encode the track ``wav`` to ``target`` in ``fmt``."""
    def write(tmp: Path) -> None:
        with sf.SoundFile(str(wav)) as src, _writer(tmp, fmt, src.samplerate, src.channels) as dst:
            total = max(src.frames, 1)
            done = 0
            for block in src.blocks(blocksize=MIX_FRAMES, dtype="int16", always_2d=True):
                dst.write(block)
                done += len(block)
                progress(done / total)

    _atomically(target, write)


def encode_mix(directory: Path, tracks: list[str], rate: int, channels: int, target: Path, fmt: Format,
               progress: Progress) -> None:
    """Encode the mixdown of ``tracks`` (see :func:`bot.web.exports.mixdown_chunks`) to ``target`` in ``fmt``."""
    def write(tmp: Path) -> None:
        files = [sf.SoundFile(str(p)) for p in mix_inputs(directory, tracks, rate, channels)]
        try:
            total = max((f.frames for f in files), default=0)
            with _writer(tmp, fmt, rate, channels) as dst:
                for done in range(0, total, MIX_FRAMES):
                    frames = min(MIX_FRAMES, total - done)
                    dst.write(mix_block(files, frames, channels))
                    progress((done + frames) / total)
        finally:
            for f in files:
                f.close()

    _atomically(target, write)


def track_encodes(directory: Path, tracks: list[str], fmt: Format) -> list[Wanted]:
    """The encoded copies of ``tracks`` in ``fmt`` (none for WAV: the tracks are WAV)."""
    if fmt.name == "wav":
        return []

    def encoder(wav: Path) -> Callable[[Path, Progress], None]:
        return lambda out, progress: encode_track(wav, out, fmt, progress)

    return [(directory / track_name(t, fmt), [directory / t], encoder(directory / t)) for t in tracks]
