"""A crash-safe, append-only 16-bit PCM WAV writer, and repair of files a crash left.

Layout. Every file starts with the same 80-byte header::

    0  "RIFF" u32 riff_size "WAVE"          (12 bytes)
    12 "JUNK" u32 28 <28 zero bytes>         (36 bytes, the reserve for ds64)
    48 "fmt " u32 16 <PCM, channels, rate>   (24 bytes)
    72 "data" u32 data_size                  (8 bytes)
    80 audio ...

This is the EBU Tech 3306 (RF64) approach: the ``JUNK`` chunk is exactly the size
of a ``ds64`` chunk, so when the audio grows past ``rf64_threshold`` (just under
4 GiB by default, where the 32-bit RIFF sizes run out) the header is rewritten in
place as ``RF64`` + ``ds64`` with both 32-bit sizes set to 0xFFFFFFFF and the real
64-bit sizes in ``ds64``; no audio ever moves. Below the threshold the file is a
plain RIFF WAV, with the ``JUNK`` chunk every reader skips: Python's ``wave``,
libsndfile/``soundfile``, ffmpeg and sox all read it. RF64 is read by libsndfile,
ffmpeg and sox; Python's ``wave`` knows only RIFF and refuses RF64 files.

Crash safety. Audio goes through one in-memory buffer (the caller appends 20 ms
frames, far too small for a system call each). :meth:`WavWriter.sync_header`
hands the buffer to the OS and only then rewrites the header sizes, so the file
on disk is always a valid WAV of at least everything up to the last sync; if the
process dies, the bytes after that are still there and :func:`repair_wav` makes
them part of the file again (sizes from the file length, a trailing partial
frame dropped). No ``fsync``: a process crash loses nothing the OS has, and a
power loss is outside what a once-a-second ``fsync`` per track could afford.

One writer belongs to one thread; it takes no locks.
"""

from __future__ import annotations

import errno as _errno
import logging
import os
import pathlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal

import numpy as np

from .opus import SAMPLE_RATE

__all__ = [
    "HEADER_SIZE",
    "RIFF_MAX_DATA",
    "WavWriteError",
    "WavFormatError",
    "WavWriter",
    "wav_header",
    "RepairReport",
    "repair_wav",
    "repair_directory",
]

_log = logging.getLogger(__name__)

#: Bytes before the first audio byte in every file this module writes.
HEADER_SIZE: Final = 80
_DS64_BODY: Final = 28  # riff u64, data u64, sample count u64, table length u32
_FMT_OFFSET: Final = 12 + 8 + _DS64_BODY
_DATA_SIZE_OFFSET: Final = HEADER_SIZE - 4
_SIZE_UNKNOWN: Final = 0xFFFFFFFF
#: Largest audio size a plain RIFF header of this layout can state: the RIFF size
#: (header after the first 8 bytes + audio) must stay below the RF64 marker 0xFFFFFFFF.
RIFF_MAX_DATA: Final = _SIZE_UNKNOWN - 1 - (HEADER_SIZE - 8)
_BUFFER_SIZE: Final = 256 * 1024
_ZEROS: Final = memoryview(bytes(_BUFFER_SIZE))
_SAMPLE_BYTES: Final = 2
_WAVE_FORMAT_PCM: Final = 1


class WavWriteError(OSError):
    """Writing a WAV file failed. ``errno`` is the cause, ``path`` the file, and the
    message reads ``<path>: <reason>``."""

    def __init__(self, path: pathlib.Path, errno: int | None, reason: str) -> None:
        super().__init__(errno, f"{path}: {reason}")
        self.path = path
        self.reason = reason

    @classmethod
    def wrap(cls, path: pathlib.Path, cause: OSError) -> WavWriteError:
        """The error for ``cause``, an ``OSError`` raised while writing ``path``."""
        return cls(path, cause.errno, cause.strerror or str(cause))


class WavFormatError(ValueError):
    """A file handed to :func:`repair_wav` is not a WAV file it can repair."""

    def __init__(self, path: pathlib.Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


def _header(channels: int, sample_rate: int, data_bytes: int, rf64: bool) -> bytes:
    block_align = channels * _SAMPLE_BYTES
    if rf64:
        head = b"RF64" + struct.pack("<I", _SIZE_UNKNOWN) + b"WAVE" + b"ds64" + struct.pack(
            "<IQQQI", _DS64_BODY, HEADER_SIZE - 8 + data_bytes, data_bytes,
            data_bytes // block_align, 0,
        )
        data_field = _SIZE_UNKNOWN
    else:
        head = b"RIFF" + struct.pack("<I", HEADER_SIZE - 8 + data_bytes) + b"WAVE"
        head += b"JUNK" + struct.pack("<I", _DS64_BODY) + bytes(_DS64_BODY)
        data_field = data_bytes
    fmt = struct.pack(
        "<4sIHHIIHH", b"fmt ", 16, _WAVE_FORMAT_PCM, channels, sample_rate,
        sample_rate * block_align, block_align, _SAMPLE_BYTES * 8,
    )
    return head + fmt + b"data" + struct.pack("<I", data_field)


def wav_header(channels: int, sample_rate: int, data_bytes: int) -> bytes:
    """The :data:`HEADER_SIZE`-byte header of a 16-bit PCM WAV of ``data_bytes`` of audio.

    For anything writing a whole WAV as a stream (a mixdown) in this module's
    layout: plain RIFF while the sizes fit 32 bits, RF64 + ``ds64`` with the
    64-bit sizes beyond (:data:`RIFF_MAX_DATA`), as a track that grew that
    large ends up. The audio follows the header directly.
    """
    if not 1 <= channels <= 0xFFFF // _SAMPLE_BYTES:
        raise ValueError(f"channels must be 1..{0xFFFF // _SAMPLE_BYTES}, not {channels}")
    if data_bytes < 0 or data_bytes % (channels * _SAMPLE_BYTES):
        raise ValueError(f"{data_bytes} bytes is not a whole number of {channels}-channel frames")
    return _header(channels, sample_rate, data_bytes, data_bytes > RIFF_MAX_DATA)


class WavWriter:
    """Append-only writer of one 16-bit PCM WAV (RF64 past ``rf64_threshold``).

    Creates or truncates ``path`` and writes a valid header for zero frames at
    once; when that header cannot be written, the file is removed again and the
    constructor raises. With ``append`` it instead continues a file this class
    wrote (a recording resumed after a restart; :func:`repair_wav` it first if
    a crash left it): new audio follows the frames already there, and a file of
    another layout or format raises :class:`WavFormatError`. After any write error the writer is failed: further ``append`` and
    ``sync_header`` calls raise :class:`WavWriteError` again, and :meth:`close`
    makes the file as whole as it can without raising. ``on_samples``, if
    given, is called with every piece of audio just before it is written.
    """

    __slots__ = (
        "path", "channels", "sample_rate", "_threshold", "_frame_bytes", "_fd",
        "_buf", "_view", "_fill", "_bytes", "_disk_bytes", "_header_bytes", "_rf64",
        "_error", "_closed", "_on_samples",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        channels: int,
        sample_rate: int = SAMPLE_RATE,
        *,
        rf64_threshold: int = RIFF_MAX_DATA,
        on_samples: Callable[[memoryview], None] | None = None,
        append: bool = False,
    ) -> None:
        if not 1 <= channels <= 0xFFFF // _SAMPLE_BYTES:
            raise ValueError(f"channels must be 1..{0xFFFF // _SAMPLE_BYTES}, not {channels}")
        if not 1 <= sample_rate <= 0xFFFFFFFF // (channels * _SAMPLE_BYTES):
            raise ValueError(f"sample_rate out of range: {sample_rate}")
        if not 0 <= rf64_threshold <= RIFF_MAX_DATA:
            raise ValueError(f"rf64_threshold must be 0..{RIFF_MAX_DATA}, not {rf64_threshold}")
        self.path = pathlib.Path(path)
        self.channels = channels
        self.sample_rate = sample_rate
        self._threshold = rf64_threshold
        # Sees every byte of audio once, in order, as it leaves the buffer (see sinks.talk).
        self._on_samples = on_samples
        self._frame_bytes = channels * _SAMPLE_BYTES
        self._buf = bytearray(_BUFFER_SIZE)
        # Slice assignment into a bytearray copies a non-bytearray source first;
        # into a memoryview it does not.
        self._view = memoryview(self._buf)
        self._fill = 0
        self._bytes = 0          # audio accepted by append*, buffered or not
        self._disk_bytes = 0     # audio handed to the OS
        self._header_bytes = -1  # audio size the header on disk states
        self._rf64 = False
        self._error: WavWriteError | None = None
        self._closed = False
        if append:
            self._continue()
            return
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise WavWriteError.wrap(self.path, exc) from None
        try:
            self._write_header(0)
            os.lseek(self._fd, HEADER_SIZE, os.SEEK_SET)
        except OSError as exc:
            os.close(self._fd)
            self._closed = True
            # A file without its header is no WAV at all (a full disk leaves it at zero
            # bytes): nothing may find it and list it as a track.
            try:
                os.unlink(self.path)
            except OSError as gone:
                _log.warning("could not remove a track left without its header: %s", os.strerror(gone.errno or 0))
            if isinstance(exc, WavWriteError):
                raise
            raise WavWriteError.wrap(self.path, exc) from None
        _log.debug("opened %s (%d ch, %d Hz)", self.path, channels, sample_rate)

    def _continue(self) -> None:
        """Open an existing file of this layout at its end (see ``append``)."""
        try:
            self._fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise WavWriteError.wrap(self.path, exc) from None
        try:
            lay = _read_layout(self.path, self._fd, os.fstat(self._fd).st_size)
            if lay.data_start != HEADER_SIZE or lay.reserve != 12:
                raise WavFormatError(self.path, "not laid out as this writer writes: cannot append")
            if lay.block_align != self._frame_bytes:
                raise WavFormatError(self.path, f"{lay.block_align}-byte frames, not {self._frame_bytes}")
            data = lay.data_size - lay.data_size % self._frame_bytes
            # A pad byte or a cut frame after the audio would end up inside it.
            os.ftruncate(self._fd, HEADER_SIZE + data)
            os.lseek(self._fd, HEADER_SIZE + data, os.SEEK_SET)
        except BaseException as exc:
            os.close(self._fd)
            self._closed = True
            if isinstance(exc, OSError) and not isinstance(exc, WavWriteError):
                raise WavWriteError.wrap(self.path, exc) from None
            raise
        self._bytes = self._disk_bytes = data
        self._rf64 = lay.kind == "RF64"
        self._header_bytes = data if data == lay.data_size else -1
        _log.debug("reopened %s at %d frames", self.path, self.frames)

    @property
    def frames(self) -> int:
        """Frames (samples per channel) appended so far."""
        return self._bytes // self._frame_bytes

    @property
    def bytes_written(self) -> int:
        """Bytes of audio appended so far (buffered bytes included)."""
        return self._bytes

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def append(self, pcm: np.ndarray) -> None:
        """Append int16 samples shaped ``(n, channels)`` (``(n,)`` for mono)."""
        self._check_usable()
        if pcm.dtype.kind != "i" or pcm.dtype.itemsize != _SAMPLE_BYTES:
            raise TypeError(f"{self.path}: samples must be int16, not {pcm.dtype}")
        if (pcm.ndim == 2 and pcm.shape[1] == self.channels) or (
            pcm.ndim == 1 and self.channels == 1
        ):
            data = memoryview(np.ascontiguousarray(pcm, dtype="<i2").view(np.uint8).reshape(-1))
        else:
            raise ValueError(
                f"{self.path}: samples shaped {pcm.shape}, expected (n, {self.channels})"
            )
        size = len(data)
        if size > _BUFFER_SIZE - self._fill:
            self._drain()
            if size >= _BUFFER_SIZE:
                self._write_all(data)
                self._bytes += size
                return
        self._view[self._fill:self._fill + size] = data
        self._fill += size
        self._bytes += size

    def append_silence(self, frames: int) -> None:
        """Append ``frames`` frames of digital silence, in buffer-sized chunks."""
        self._check_usable()
        if frames < 0:
            raise ValueError(f"{self.path}: negative silence length {frames}")
        remaining = frames * self._frame_bytes
        while remaining:
            chunk = min(remaining, _BUFFER_SIZE - self._fill)
            self._view[self._fill:self._fill + chunk] = _ZEROS[:chunk]
            self._fill += chunk
            self._bytes += chunk
            remaining -= chunk
            if self._fill == _BUFFER_SIZE:
                self._drain()

    def sync_header(self) -> None:
        """Hand buffered audio to the OS, then make the header state its size.

        Afterwards the file is a valid WAV of everything appended so far, even if
        the process dies right here. Costs one ``write`` and one 80-byte ``pwrite``.
        """
        self._check_usable()
        self._drain()
        if self._disk_bytes != self._header_bytes:
            self._write_header(self._disk_bytes)

    def close(self) -> None:
        """Write the final header and close the file. Idempotent.

        Raises :class:`WavWriteError` if flushing fails on a healthy writer. After
        an earlier write error it is best-effort and never raises: buffered audio
        is dropped, the file is cut to the whole frames that reached the OS, and
        the header states them (a failure there is logged, and the file keeps the
        header of the last successful sync).
        """
        if self._closed:
            return
        try:
            if self._error is None:
                try:
                    self._drain()
                    if self._disk_bytes != self._header_bytes:
                        self._write_header(self._disk_bytes)
                except WavWriteError:
                    self._salvage()
                    raise
            else:
                self._salvage()
        finally:
            self._closed = True
            try:
                os.close(self._fd)
            except OSError as exc:
                _log.warning("closing %s failed: %s", self.path, exc.strerror)
        _log.debug("closed %s: %d frames", self.path, self.frames)

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if self._error is not None:
            raise WavWriteError(
                self.path, self._error.errno, f"writer failed earlier: {self._error.reason}"
            )

    def _drain(self) -> None:
        if self._fill:
            self._write_all(self._view[:self._fill])
            self._fill = 0

    def _write_all(self, data: memoryview) -> None:
        """Hand audio to the OS, shown to ``on_samples`` first: every byte passes here once."""
        if self._on_samples is not None:
            self._on_samples(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            self._error = WavWriteError.wrap(self.path, exc)
            raise self._error from None
        finally:
            self._disk_bytes += done

    def _write_header(self, data_bytes: int) -> None:
        rf64 = self._rf64 or data_bytes > self._threshold
        header = _header(self.channels, self.sample_rate, data_bytes, rf64)
        try:
            written = os.pwrite(self._fd, header, 0)
            if written != len(header):
                raise OSError(_errno.EIO, f"short header write ({written} bytes)")
        except OSError as exc:
            self._error = WavWriteError.wrap(self.path, exc)
            raise self._error from None
        if rf64 and not self._rf64:
            _log.info("%s passed %d bytes: header switched to RF64", self.path, self._threshold)
        self._rf64 = rf64
        self._header_bytes = data_bytes

    def _salvage(self) -> None:
        """Best effort after a write error: keep the whole frames the OS has."""
        self._fill = 0
        whole = self._disk_bytes - self._disk_bytes % self._frame_bytes
        try:
            os.ftruncate(self._fd, HEADER_SIZE + whole)
            self._write_header(whole)
        except OSError as exc:
            _log.warning(
                "%s: could not finalize after a write error (%s); it stays valid "
                "up to the last header sync", self.path, os.strerror(exc.errno or 0),
            )


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :func:`repair_wav` found and did."""

    path: pathlib.Path
    #: Whole frames in the data chunk after the repair.
    frames: int
    #: True when the header already matched the file (then nothing was written).
    was_valid: bool
    #: Bytes of a trailing partial frame cut off the end.
    truncated_bytes: int
    format: Literal["RIFF", "RF64"]


@dataclass(slots=True)
class _Layout:
    kind: Literal["RIFF", "RF64"]
    riff_size: int        # the 32-bit field, or ds64's 64-bit one for RF64
    block_align: int
    data_size: int        # the stated size (ds64's for RF64)
    data_start: int       # offset of the first audio byte
    reserve: int | None   # offset of a JUNK/ds64 chunk right after "WAVE"
    reserve_size: int


def _read_layout(path: pathlib.Path, fd: int, file_len: int) -> _Layout:
    head = os.pread(fd, 12, 0)
    if len(head) < 12:
        raise WavFormatError(path, f"too short for a WAV header ({file_len} bytes)")
    magic, riff_size, wave = struct.unpack("<4sI4s", head)
    if magic not in (b"RIFF", b"RF64") or wave != b"WAVE":
        raise WavFormatError(path, "not a WAV file (no RIFF/RF64 WAVE header)")
    kind: Literal["RIFF", "RF64"] = "RIFF" if magic == b"RIFF" else "RF64"
    block_align = 0
    ds64_data = None
    reserve, reserve_size = None, 0
    pos = 12
    while True:
        chunk = os.pread(fd, 8, pos)
        if len(chunk) < 8:
            raise WavFormatError(path, f"no data chunk in its {file_len} bytes")
        cid, size = struct.unpack("<4sI", chunk)
        body = pos + 8
        if cid == b"data":
            if block_align == 0:
                raise WavFormatError(path, "data chunk before any fmt chunk")
            data_size = ds64_data if kind == "RF64" and size == _SIZE_UNKNOWN else size
            if data_size is None:
                raise WavFormatError(path, "RF64 file without a ds64 chunk")
            return _Layout(kind, riff_size, block_align, data_size, body, reserve, reserve_size)
        if pos == 12 and cid in (b"JUNK", b"ds64") and size >= _DS64_BODY:
            reserve, reserve_size = pos, size
        if cid == b"ds64":
            big_riff, ds64_data = struct.unpack("<QQ", os.pread(fd, 16, body))
            if kind == "RF64":
                riff_size = big_riff
        elif cid == b"fmt ":
            fmt = os.pread(fd, 16, body)
            if len(fmt) < 16:
                raise WavFormatError(path, "truncated fmt chunk")
            block_align = struct.unpack_from("<H", fmt, 12)[0]
            if block_align == 0:
                raise WavFormatError(path, "fmt chunk with a block size of 0")
        pos = body + size + (size & 1)


def repair_wav(path: str | os.PathLike[str]) -> RepairReport:
    """Make a WAV file left by a crash valid again, in place.

    The RIFF and data sizes are taken from the file length (the data chunk is the
    last one, as :class:`WavWriter` writes it), a trailing partial frame is cut,
    and a file whose audio no longer fits 32-bit sizes becomes RF64 through its
    ``JUNK`` reserve. A file whose header already matches its length is not
    touched. Raises :class:`WavFormatError` (a ``ValueError``) for a file that is
    too short or not a WAV, and ``OSError`` when it cannot be read or written.
    """
    path = pathlib.Path(path)
    fd = os.open(path, os.O_RDWR)
    try:
        file_len = os.fstat(fd).st_size
        lay = _read_layout(path, fd, file_len)
        pad = lay.data_size & 1
        if (
            lay.riff_size + 8 == file_len
            and lay.data_size % lay.block_align == 0
            and lay.data_start + lay.data_size + pad <= file_len
        ):
            return RepairReport(path, lay.data_size // lay.block_align, True, 0, lay.kind)
        available = max(file_len - lay.data_start, 0)
        data_size = available - available % lay.block_align
        pad = data_size & 1
        new_len = lay.data_start + data_size + pad
        riff_size = new_len - 8
        kind = lay.kind
        if riff_size > _SIZE_UNKNOWN - 1:
            kind = "RF64"
        if kind == "RF64" and lay.reserve is None:
            raise WavFormatError(path, (
                f"{data_size} bytes of audio need RF64, and the file has no "
                "JUNK/ds64 chunk after its header to hold the 64-bit sizes"
            ))
        os.ftruncate(fd, new_len)
        if kind == "RF64":
            assert lay.reserve is not None
            os.pwrite(fd, b"RF64" + struct.pack("<I", _SIZE_UNKNOWN), 0)
            os.pwrite(fd, b"ds64" + struct.pack(
                "<IQQQI", lay.reserve_size, riff_size, data_size,
                data_size // lay.block_align, 0,
            ), lay.reserve)
            os.pwrite(fd, struct.pack("<I", _SIZE_UNKNOWN), lay.data_start - 4)
        else:
            os.pwrite(fd, struct.pack("<I", riff_size), 4)
            os.pwrite(fd, struct.pack("<I", data_size), lay.data_start - 4)
        truncated = max(file_len - new_len, 0)
        report = RepairReport(path, data_size // lay.block_align, False, truncated, kind)
        _log.info(
            "repaired %s: %d frames, %d trailing bytes cut, %s",
            path, report.frames, truncated, kind,
        )
        return report
    finally:
        os.close(fd)


def repair_directory(directory: str | os.PathLike[str]) -> list[RepairReport]:
    """Run :func:`repair_wav` on every ``*.wav`` directly in ``directory``.

    Files that cannot be repaired (not a WAV, too short, unreadable) are skipped
    with a logged warning so one bad file does not hide the others; the reports
    list only the files that were checked or repaired, sorted by name.
    """
    reports = []
    for path in sorted(pathlib.Path(directory).glob("*.wav")):
        if not path.is_file():
            continue
        try:
            reports.append(repair_wav(path))
        except (WavFormatError, OSError) as exc:
            _log.warning("skipped %s: %s", path, exc)
    return reports
