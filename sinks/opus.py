"""A thin ctypes binding to libopus: decoder and encoder at 48 kHz.

Decoding goes straight into one preallocated buffer per decoder, because the
per-call allocations of higher-level wrappers cost more than libopus itself
(measured on a 2-core AMD EPYC: discord.py's decoder ~140 us versus ~40-55 us
per 20 ms frame here).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Final

import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "FRAME_SAMPLES",
    "MAX_FRAME_SAMPLES",
    "SILENCE_FRAME",
    "OpusError",
    "OpusDecoder",
    "OpusEncoder",
    "packet_samples",
]

_log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 48_000
#: Samples per channel in one 20 ms frame, the frame Discord sends.
FRAME_SAMPLES: Final = 960
#: The longest Opus packet is 120 ms.
MAX_FRAME_SAMPLES: Final = 5760
#: The 3-byte Opus silence frame. Discord clients send five of them when a
#: speaker stops, then nothing until they speak again.
SILENCE_FRAME: Final = b"\xf8\xff\xfe"

_OPUS_OK: Final = 0
_APPLICATION_AUDIO: Final = 2049
_SET_BITRATE: Final = 4002
_SET_INBAND_FEC: Final = 4012
_SET_PACKET_LOSS_PERC: Final = 4014


class OpusError(Exception):
    """A libopus call failed; the message carries libopus's own error string."""


def _load_library() -> ctypes.CDLL:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise OpusError(
            f"libopus could not be loaded ({exc}); install it (Debian: apt-get install libopus0)"
        ) from exc
    c_int_p = ctypes.POINTER(ctypes.c_int)
    lib.opus_strerror.argtypes = [ctypes.c_int]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, c_int_p]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decode.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
    ]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, c_int_p]
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encoder_destroy.restype = None
    lib.opus_encode.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int32,
    ]
    lib.opus_encode.restype = ctypes.c_int32
    # Variadic in C; declaring the one int argument we pass keeps the state pointer 64-bit.
    lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.opus_encoder_ctl.restype = ctypes.c_int
    lib.opus_packet_get_nb_samples.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32]
    lib.opus_packet_get_nb_samples.restype = ctypes.c_int
    return lib


_lib: ctypes.CDLL | None = None
_load_lock = threading.Lock()


def load() -> None:
    """Load libopus now, raising :class:`OpusError` if it is missing.

    Called where a worker pool is built: finding the library runs ``ldconfig``
    and makes temporary files, which must not happen in the audio path (a
    process short of descriptors mid-recording would fail its first decode).
    """
    _opus()


def _opus() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        with _load_lock:
            if _lib is None:
                _lib = _load_library()
    return _lib


def _error_text(code: int) -> str:
    return _opus().opus_strerror(code).decode("ascii", "replace")


def packet_samples(packet: bytes) -> int:
    """Return how many samples per channel an Opus packet decodes to at 48 kHz.

    Raises:
        OpusError: the packet is malformed.
    """
    n = _opus().opus_packet_get_nb_samples(packet, len(packet), SAMPLE_RATE)
    if n < 0:
        raise OpusError(f"bad Opus packet: {_error_text(n)}")
    return n


class OpusDecoder:
    """One Opus decoder state (one per speaker: decoders are stateful).

    Each decode writes into a buffer the decoder owns and returns a numpy view
    of it, valid until the next call on this decoder.
    """

    __slots__ = ("channels", "_state", "_buffer", "_buffer_ptr")

    def __init__(self, channels: int = 2) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.channels = channels
        error = ctypes.c_int(0)
        state = _opus().opus_decoder_create(SAMPLE_RATE, channels, ctypes.byref(error))
        if error.value != _OPUS_OK or not state:
            raise OpusError(f"opus_decoder_create failed: {_error_text(error.value)}")
        self._state = state
        self._buffer = np.zeros((MAX_FRAME_SAMPLES, channels), dtype=np.int16)
        self._buffer_ptr = self._buffer.ctypes.data

    def decode(self, packet: bytes) -> np.ndarray:
        """Decode one packet; return int16 samples shaped (samples, channels).

        Raises:
            OpusError: the packet is corrupt.
        """
        n = _opus().opus_decode(self._state, packet, len(packet), self._buffer_ptr, MAX_FRAME_SAMPLES, 0)
        if n < 0:
            raise OpusError(f"opus_decode failed: {_error_text(n)}")
        return self._buffer[:n]

    def conceal(self, samples: int = FRAME_SAMPLES, next_packet: bytes | None = None) -> np.ndarray:
        """Synthesize `samples` samples for a lost packet.

        With `next_packet`, its in-band forward error correction data (if the
        sender included any) rebuilds the lost frame; otherwise libopus's packet
        loss concealment extrapolates from the audio before the gap.
        """
        samples = max(120, min(samples, MAX_FRAME_SAMPLES))
        if next_packet is not None:
            n = _opus().opus_decode(self._state, next_packet, len(next_packet), self._buffer_ptr, samples, 1)
        else:
            n = _opus().opus_decode(self._state, None, 0, self._buffer_ptr, samples, 0)
        if n < 0:
            raise OpusError(f"opus concealment failed: {_error_text(n)}")
        return self._buffer[:n]

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state and _lib is not None:
            _lib.opus_decoder_destroy(state)
            self._state = None


class OpusEncoder:
    """One Opus encoder state for 20 ms frames of 48 kHz int16 audio."""

    __slots__ = ("channels", "_state", "_out")

    def __init__(self, channels: int = 2, bitrate: int = 64_000, fec: bool = False) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.channels = channels
        error = ctypes.c_int(0)
        state = _opus().opus_encoder_create(SAMPLE_RATE, channels, _APPLICATION_AUDIO, ctypes.byref(error))
        if error.value != _OPUS_OK or not state:
            raise OpusError(f"opus_encoder_create failed: {_error_text(error.value)}")
        self._state = state
        self._out = ctypes.create_string_buffer(4000)
        self._ctl(_SET_BITRATE, bitrate)
        if fec:
            self._ctl(_SET_INBAND_FEC, 1)
            self._ctl(_SET_PACKET_LOSS_PERC, 15)

    def _ctl(self, request: int, value: int) -> None:
        code = _opus().opus_encoder_ctl(self._state, request, value)
        if code != _OPUS_OK:
            raise OpusError(f"opus_encoder_ctl({request}) failed: {_error_text(code)}")

    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode one frame: int16 samples shaped (samples, channels) or flat interleaved.

        Raises:
            OpusError: libopus refused the frame (e.g. not 2.5-60 ms long).
        """
        frame = np.ascontiguousarray(pcm, dtype=np.int16)
        samples = frame.size // self.channels
        n = _opus().opus_encode(self._state, frame.ctypes.data, samples, self._out, len(self._out))
        if n < 0:
            raise OpusError(f"opus_encode failed: {_error_text(n)}")
        return self._out.raw[:n]

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state and _lib is not None:
            _lib.opus_encoder_destroy(state)
            self._state = None
