"""Hostile voice datagrams built from fuzzer bytes.

:class:`DatagramForge` turns the bytes of one fuzz input (read through a
:class:`Source`, which atheris' ``FuzzedDataProvider`` is) into one datagram
of a named shape. The fuzzer's coverage feedback then steers the choices.
Most shapes start from something real and lie about one part of it, since
pure noise never gets past the transport tag:

* ``random``: bytes as they come;
* ``rtcp`` / ``ip_discovery``: those packets' shapes with random bodies;
* ``sealed``: an RTP packet built field by field (version, P/X bits, CSRC
  count, payload type, SSRC, extension preamble and declared length, padding
  byte, frame) and sealed under the *real* transport key, so its lies reach
  the checks behind decryption; the frame is a real DAVE frame, one with its
  trailer rewritten (tag, ULEB nonce and ranges, size byte, magic), plain
  Opus, Opus silence or noise;
* ``tampered``: a ``sealed`` packet cut, extended or with bits flipped after
  sealing (header, tag, nonce counter, anywhere);
* ``wrong_key``: sealed under another key;
* ``replay``: a real speaker's datagram sent again, byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from tests.voice.packets import XCHACHA, seal

__all__ = ("SHAPES", "DatagramForge", "Source")

SHAPES: Final = ("random", "rtcp", "ip_discovery", "sealed", "tampered", "wrong_key", "replay")

_OPUS_PT: Final = 120
_SILENCE: Final = b"\xf8\xff\xfe"
_DAVE_MAGIC: Final = b"\xfa\xfa"
#: 8-byte DAVE tag; what follows it is the trailer the fuzzer rewrites.
_DAVE_TAG: Final = 8
_WRONG_KEY: Final = bytes(range(1, 33))


class Source(Protocol):
    """The part of atheris' ``FuzzedDataProvider`` the forge uses."""

    def ConsumeIntInRange(self, low: int, high: int) -> int:  # noqa: N802 (atheris' names)
        """An int in ``[low, high]`` (``low`` once the input is used up)."""
        ...

    def ConsumeBytes(self, count: int) -> bytes:  # noqa: N802
        """Up to ``count`` bytes."""
        ...


def _rarely(src: Source, one_in: int) -> bool:
    """True for one value in ``one_in``: the top one, so an input that ran out of bytes tells the truth."""
    return src.ConsumeIntInRange(0, one_in - 1) == one_in - 1


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class DatagramForge:
    """Builds one hostile datagram per fuzz input.

    :param key: the session's real transport key.
    :param ssrcs: SSRCs the fuzzer may pick from (mapped and unmapped ones);
        a fully random one is picked too, but never ``reserved``.
    :param reserved: the real speaker's SSRC, which only real frames use (so
        no forged packet can take a real frame's place on its track).
    :param dave_frame: returns a fresh real DAVE frame of a fuzz user (to send or mutate).
    :param opus_frames: real plain Opus frames.
    :param recent: returns the real speaker's recent datagrams, for replays.
    """

    def __init__(
        self,
        key: bytes,
        ssrcs: Sequence[int],
        reserved: int,
        dave_frame: Callable[[], bytes],
        opus_frames: Sequence[bytes],
        recent: Callable[[], Sequence[bytes]],
    ) -> None:
        self._key = key
        self._ssrcs = list(ssrcs)
        self._reserved = reserved
        self._dave_frame = dave_frame
        self._opus_frames = list(opus_frames)
        self._recent = recent

    def forge(self, src: Source, salt: int) -> tuple[str, bytes]:
        """Return ``(shape, datagram)`` for one input.

        ``salt`` (the input's number) offsets what a real sender changes on
        every packet (sequence number, timestamp, nonce counter, which real
        frame): a short input then still makes a new packet, not the same one
        again, and the fuzzer's bytes decide only the lies.
        """
        shape = SHAPES[src.ConsumeIntInRange(0, len(SHAPES) - 1)]
        if shape == "random":
            return shape, src.ConsumeBytes(src.ConsumeIntInRange(0, 1500))
        if shape == "rtcp":
            first = 0x80 | src.ConsumeIntInRange(0, 0x3F)
            return shape, bytes([first, src.ConsumeIntInRange(200, 204)]) + src.ConsumeBytes(src.ConsumeIntInRange(0, 120))
        if shape == "ip_discovery":
            size = src.ConsumeIntInRange(0, 100) if _rarely(src, 4) else 74
            body = struct.pack(">HHI", src.ConsumeIntInRange(0, 3), 70, src.ConsumeIntInRange(0, 2**32 - 1))
            return shape, (body + src.ConsumeBytes(size)).ljust(size, b"\0")[:size]
        if shape == "replay":
            recent = self._recent()
            if recent:
                return shape, recent[(src.ConsumeIntInRange(0, len(recent) - 1) + salt) % len(recent)]
            return shape, b""
        data = self._sealed(src, _WRONG_KEY if shape == "wrong_key" else self._key, salt)
        if shape == "tampered":
            data = self._tamper(src, bytearray(data))
        return shape, data

    def _ssrc(self, src: Source) -> int:
        choice = src.ConsumeIntInRange(0, len(self._ssrcs))
        ssrc = self._ssrcs[choice] if choice < len(self._ssrcs) else src.ConsumeIntInRange(0, 2**32 - 1)
        return ssrc ^ 1 if ssrc == self._reserved else ssrc

    def _sealed(self, src: Source, key: bytes, salt: int) -> bytes:
        version = src.ConsumeIntInRange(0, 3) if _rarely(src, 16) else 2
        padding = _rarely(src, 4)
        extension = _rarely(src, 2)
        csrc_count = src.ConsumeIntInRange(0, 15) if _rarely(src, 4) else 0
        payload_type = src.ConsumeIntInRange(0, 0x7F) if _rarely(src, 8) else _OPUS_PT
        marker = src.ConsumeIntInRange(0, 1)
        first = version << 6 | padding << 5 | extension << 4 | csrc_count
        header = struct.pack(
            ">BBHII",
            first,
            marker << 7 | payload_type,
            (src.ConsumeIntInRange(0, 0xFFFF) + salt) & 0xFFFF,
            (src.ConsumeIntInRange(0, 2**32 - 1) + 960 * salt) & 0xFFFFFFFF,
            self._ssrc(src),
        )
        header += src.ConsumeBytes(4 * csrc_count).ljust(4 * csrc_count, b"\0")
        body = b""
        if extension:
            profile = src.ConsumeIntInRange(0, 0xFFFF) if _rarely(src, 8) else 0xBEDE
            words = src.ConsumeIntInRange(0, 4)
            # The declared length usually tells the truth; when it lies it may claim up to 256 KiB.
            declared = src.ConsumeIntInRange(0, 0xFFFF) if _rarely(src, 4) else words
            header += struct.pack(">HH", profile, declared)
            body = src.ConsumeBytes(4 * words).ljust(4 * words, b"\0")
        plaintext = body + self._frame(src, salt)
        if padding:
            count = src.ConsumeIntInRange(0, 8)
            last = src.ConsumeIntInRange(0, 255) if _rarely(src, 4) else count
            plaintext += bytes(max(count - 1, 0)) + bytes([last])
        # An honest sender's AAD ends where its header does; a liar's may end anywhere.
        cut = src.ConsumeIntInRange(0, len(header)) if _rarely(src, 8) else len(header)
        clear, secret = header[:cut], header[cut:] + plaintext
        return seal(XCHACHA, key, clear, secret, (src.ConsumeIntInRange(0, 2**32 - 1) + salt) & 0xFFFFFFFF)

    def _frame(self, src: Source, salt: int) -> bytes:
        kind = src.ConsumeIntInRange(0, 5)
        if kind == 1:
            return self._opus_frames[(src.ConsumeIntInRange(0, 255) + salt) % len(self._opus_frames)]
        if kind == 2:
            return _SILENCE
        if kind == 3:
            return src.ConsumeBytes(src.ConsumeIntInRange(0, 400))
        frame = self._dave_frame()
        if kind == 0:
            return frame
        if kind == 4:
            cut = bytearray(frame)
            for _ in range(src.ConsumeIntInRange(1, 4)):
                # Mostly in the last 24 bytes: tag, ULEB fields, size byte, magic.
                back = None if _rarely(src, 4) else src.ConsumeIntInRange(1, min(24, len(cut)))
                index = src.ConsumeIntInRange(0, len(cut) - 1) if back is None else len(cut) - back
                cut[index] ^= 1 << src.ConsumeIntInRange(0, 7)
            return bytes(cut[: src.ConsumeIntInRange(0, len(cut))] if _rarely(src, 8) else cut)
        return self._rewritten_trailer(src, frame)

    def _rewritten_trailer(self, src: Source, frame: bytes) -> bytes:
        """A real frame's ciphertext and tag with a trailer of the fuzzer's making."""
        supplemental = frame[-3]
        keep = max(len(frame) - supplemental, 0) + _DAVE_TAG if supplemental <= len(frame) else len(frame)
        head = frame[: min(keep, len(frame))]
        # A raw 12-byte nonce field is an unterminated or overlong ULEB when its bytes have the top bit set.
        nonce = src.ConsumeBytes(12) if _rarely(src, 4) else _uleb(src.ConsumeIntInRange(0, 2**64 - 1))
        ranges = b"".join(_uleb(src.ConsumeIntInRange(0, 2**32)) for _ in range(src.ConsumeIntInRange(0, 6)))
        trailer = nonce + ranges
        size = src.ConsumeIntInRange(0, 255) if _rarely(src, 4) else len(trailer) + _DAVE_TAG + 3
        magic = src.ConsumeBytes(2) if _rarely(src, 8) else _DAVE_MAGIC
        return head + trailer + bytes([size & 0xFF]) + magic

    def _tamper(self, src: Source, data: bytearray) -> bytes:
        action = src.ConsumeIntInRange(0, 3)
        if action == 0:
            return bytes(data[: src.ConsumeIntInRange(0, len(data))])
        if action == 1:
            return bytes(data + src.ConsumeBytes(src.ConsumeIntInRange(1, 64)))
        for _ in range(src.ConsumeIntInRange(1, 3)):
            # action 2: header, tag or nonce counter (the first 16 and last 20 bytes); 3: anywhere
            if action == 2:
                index = src.ConsumeIntInRange(0, 15) if _rarely(src, 2) else len(data) - src.ConsumeIntInRange(1, 20)
                index = min(max(index, 0), len(data) - 1)
            else:
                index = src.ConsumeIntInRange(0, len(data) - 1)
            data[index] ^= 1 << src.ConsumeIntInRange(0, 7)
        return bytes(data)
