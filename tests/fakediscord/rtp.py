"""RTP packets as Discord's voice server sends them, and rtpsize transport encryption.

Layout of one `*_rtpsize` packet (discord-api-docs, "Voice Connections"):

    [12-byte RTP header][4*CC CSRCs][BEDE preamble if X]   <- AAD, in the clear
    [extension body][Opus frame][RTP padding]               <- encrypted
    [16-byte AEAD tag][4-byte big-endian nonce counter]

Real senders use both 0x80 and 0x90 first bytes and sometimes pad, so the
fake does too: receivers must strip the extension body and the padding.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Final

import nacl.bindings
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "OPUS_PAYLOAD_TYPE",
    "SILENCE_FRAME",
    "MODE_XCHACHA",
    "MODE_AES_GCM",
    "SUPPORTED_MODES",
    "RtpPacket",
    "TransportCipher",
    "audio_level_extension",
    "rtcp_sender_report",
]

_log = logging.getLogger(__name__)

OPUS_PAYLOAD_TYPE: Final = 0x78
#: Opus "silence" frame; Discord clients send five after a talk burst. DAVE leaves it untouched.
SILENCE_FRAME: Final = b"\xf8\xff\xfe"
MODE_XCHACHA: Final = "aead_xchacha20_poly1305_rtpsize"
MODE_AES_GCM: Final = "aead_aes256_gcm_rtpsize"
SUPPORTED_MODES: Final = (MODE_AES_GCM, MODE_XCHACHA)

_EXTENSION_PROFILE: Final = 0xBEDE
_TAG_SIZE: Final = 16


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One plaintext RTP packet before transport encryption.

    `extension` is the header-extension body (a multiple of 4 bytes, or empty
    for no X bit); `padding` is how many RTP padding bytes to append (0: no P bit).
    """

    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    extension: bytes = b""
    padding: int = 0
    payload_type: int = OPUS_PAYLOAD_TYPE

    def __post_init__(self) -> None:
        if len(self.extension) % 4:
            raise ValueError("RTP extension body must be a multiple of 4 bytes")
        if not 0 <= self.padding <= 255:
            raise ValueError("RTP padding must be 0..255 bytes")

    def clear_part(self) -> bytes:
        """The bytes sent in the clear and authenticated: header plus extension preamble."""
        first = 0x80 | (0x10 if self.extension else 0) | (0x20 if self.padding else 0)
        header = struct.pack(">BBHII", first, self.payload_type, self.seq & 0xFFFF,
                             self.timestamp & 0xFFFFFFFF, self.ssrc)
        if self.extension:
            header += struct.pack(">HH", _EXTENSION_PROFILE, len(self.extension) // 4)
        return header

    def secret_part(self) -> bytes:
        """The bytes rtpsize encrypts: extension body, payload, padding (last byte = its length)."""
        pad = b""
        if self.padding:
            pad = bytes(self.padding - 1) + bytes([self.padding])
        return self.extension + self.payload + pad


def audio_level_extension(level: int) -> bytes:
    """A one-byte-header extension body carrying RFC 6464 audio level (id 1), padded to 4 bytes."""
    return bytes([0x10, level & 0x7F, 0, 0])


class TransportCipher:
    """The AEAD of one voice connection: its mode, its secret key, its nonce counter.

    Discord keeps one counter per direction per connection; every packet sent to
    one client uses the next value, whichever speaker it carries.
    """

    __slots__ = ("mode", "key", "_counter", "_aes")

    def __init__(self, mode: str, key: bytes, *, first_counter: int = 0) -> None:
        if mode not in SUPPORTED_MODES:
            raise ValueError(f"unsupported transport mode {mode!r}")
        if len(key) != 32:
            raise ValueError("transport key must be 32 bytes")
        self.mode = mode
        self.key = key
        self._counter = first_counter & 0xFFFFFFFF
        self._aes = AESGCM(key) if mode == MODE_AES_GCM else None

    def seal(self, clear: bytes, secret: bytes) -> bytes:
        """Return the full datagram: clear part, ciphertext + tag, nonce counter."""
        counter = struct.pack(">I", self._counter)
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        if self._aes is not None:
            sealed = self._aes.encrypt(counter + bytes(8), secret, clear)
        else:
            sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
                secret, clear, counter + bytes(20), self.key)
        return clear + sealed + counter

    def seal_rtp(self, packet: RtpPacket) -> bytes:
        """Encrypt one RTP packet for this connection."""
        return self.seal(packet.clear_part(), packet.secret_part())


def rtcp_sender_report(ssrc: int, ntp: int, rtp_timestamp: int, packets: int, octets: int) -> tuple[bytes, bytes]:
    """An RTCP sender report as (clear 8-byte header, 20-byte sender info to encrypt).

    Receivers must recognise it by its second byte (200) and never hand it to Opus.
    """
    clear = struct.pack(">BBHI", 0x80, 200, 6, ssrc)
    secret = struct.pack(">QIII", ntp, rtp_timestamp & 0xFFFFFFFF, packets, octets)
    return clear, secret
