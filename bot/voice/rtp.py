"""RTP header parsing and datagram classification for Discord voice receive.

Discord's UDP socket carries more than audio RTP: RTCP reports, the replies to
IP discovery, and video/RTX streams of other members. :func:`classify` sorts a
datagram before any crypto runs; :meth:`RtpHeader.parse` reads the fixed
header plus the CSRC list and the RFC 8285 extension preamble, which with the
``*_rtpsize`` transport modes are authenticated but not encrypted.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .refused import DatagramRefused

__all__ = (
    "CSRC_SIZE",
    "EXTENSION_PREAMBLE_SIZE",
    "EXTENSION_PROFILE",
    "EXTENSION_WORD_SIZE",
    "IP_DISCOVERY_REPLY",
    "IP_DISCOVERY_REQUEST",
    "IP_DISCOVERY_SIZE",
    "OPUS_PAYLOAD_TYPE",
    "RTP_HEADER_SIZE",
    "DatagramKind",
    "PayloadError",
    "RtpHeader",
    "classify",
    "strip_payload",
)

#: Discord's dynamic payload type for Opus audio.
OPUS_PAYLOAD_TYPE = 120
#: Fixed part of every RTP header (RFC 3550 section 5.1).
RTP_HEADER_SIZE = 12
#: Bytes of each contributing-source id after the fixed header.
CSRC_SIZE = 4
#: The header extension's clear preamble: profile (u16) and length in words (u16).
EXTENSION_PREAMBLE_SIZE = 4
#: RFC 8285 one-byte-header profile, the only one Discord sends.
EXTENSION_PROFILE = 0xBEDE
#: The extension length counts 32-bit words.
EXTENSION_WORD_SIZE = 4
#: IP discovery packets, request and reply alike: u16 type, u16 length (70), u32 SSRC,
#: 64-byte address, u16 port.
IP_DISCOVERY_SIZE = 74
IP_DISCOVERY_REQUEST = 1
IP_DISCOVERY_REPLY = 2

_RTCP_TYPES = range(200, 205)
_FIXED = struct.Struct(">BBHII")
_EXTENSION = struct.Struct(">HH")


class DatagramKind(enum.Enum):
    """What a datagram read from the voice socket is, before decryption."""

    RTP = "rtp"
    RTCP = "rtcp"
    IP_DISCOVERY = "ip_discovery"
    NOT_RTP = "not_rtp"
    TOO_SHORT = "too_short"


def classify(data: bytes) -> DatagramKind:
    """Sort a voice-socket datagram by its first bytes.

    RTCP shares RTP's version bits, so it is told apart by its packet type
    (second byte 200..204), which as RTP would read as marker + type 72..76.
    """
    if len(data) < RTP_HEADER_SIZE:
        return DatagramKind.TOO_SHORT
    if data[0] >> 6 != 2:
        if len(data) == IP_DISCOVERY_SIZE and data[0] == 0 and data[1] == IP_DISCOVERY_REPLY:
            return DatagramKind.IP_DISCOVERY
        return DatagramKind.NOT_RTP
    if data[1] in _RTCP_TYPES:
        return DatagramKind.RTCP
    return DatagramKind.RTP


@dataclass(slots=True)
class RtpHeader:
    """The clear-text part of one RTP packet.

    Not frozen: one is built per datagram on the socket thread, and a frozen
    dataclass's ``__init__`` costs several times more.

    ``header_length`` is where the transport-encrypted part starts and so the
    length of the AEAD additional data in the rtpsize modes: the fixed header,
    the CSRC list and, when ``extension`` is set, only the 4-byte extension
    preamble. The extension *body* (``extension_length`` 32-bit words) is
    encrypted and sits at the front of the decrypted payload.
    """

    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_length: int
    extension_length: int

    @classmethod
    def parse(cls, data: bytes) -> RtpHeader | None:
        """Parse the header of ``data``; ``None`` if it is not a complete RTP version 2 header."""
        if len(data) < RTP_HEADER_SIZE:
            return None
        first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
        if first >> 6 != 2:
            return None
        csrc_count = first & 0x0F
        length = RTP_HEADER_SIZE + CSRC_SIZE * csrc_count
        extension = bool(first & 0x10)
        extension_length = 0
        if extension:
            if len(data) < length + EXTENSION_PREAMBLE_SIZE:
                return None
            profile, extension_length = _EXTENSION.unpack_from(data, length)
            if profile != EXTENSION_PROFILE:
                return None
            length += EXTENSION_PREAMBLE_SIZE
        elif len(data) < length:
            return None
        # Positional, in field order: keywords cost the socket thread a third more per header.
        return cls(bool(first & 0x20), extension, csrc_count, bool(second & 0x80), second & 0x7F,
                   sequence, timestamp, ssrc, length, extension_length)


class PayloadError(DatagramRefused):
    """A decrypted payload whose extension length or padding byte lies.

    ``reason`` is a short counter key: ``bad_extension``, ``bad_padding`` or
    ``empty_frame``.
    """


def strip_payload(header: RtpHeader, plaintext: bytes) -> bytes:
    """Return the media frame inside a decrypted rtpsize payload.

    Drops the ``4 * extension_length`` bytes of extension body from the front
    and, when the P bit is set, ``plaintext[-1]`` bytes of padding from the end
    (left on, padding corrupts the DAVE trailer read from the frame's end).
    Raises :class:`PayloadError` when either length does not fit.
    """
    start = EXTENSION_WORD_SIZE * header.extension_length
    end = len(plaintext)
    if start > end:
        raise PayloadError("bad_extension")
    if header.padding:
        pad = plaintext[-1] if end else 0
        if pad == 0 or pad > end - start:
            raise PayloadError("bad_padding")
        end -= pad
    if end == start:
        raise PayloadError("empty_frame")
    return plaintext[start:end]
