"""An independent, deliberately plain rtpsize packet builder for the receive tests.

Written from the wire layout in Discord's voice documentation (discord-api-docs,
"Voice Connections": transport encryption), not from bot/voice, so the
tests check the receiver against the protocol rather than against itself.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

XCHACHA = "aead_xchacha20_poly1305_rtpsize"
AES_GCM = "aead_aes256_gcm_rtpsize"
OPUS_PT = 120


def rtp_header(
    *,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload_type: int = OPUS_PT,
    csrcs: tuple[int, ...] = (),
    extension_words: int | None = None,
    padding: bool = False,
    marker: bool = False,
) -> bytes:
    """The clear part: fixed header, CSRCs, and the 0xBEDE preamble if an extension is present."""
    first = 0x80 | len(csrcs)
    if extension_words is not None:
        first |= 0x10
    if padding:
        first |= 0x20
    second = (0x80 if marker else 0) | payload_type
    out = struct.pack(">BBHII", first, second, sequence, timestamp, ssrc)
    out += b"".join(struct.pack(">I", c) for c in csrcs)
    if extension_words is not None:
        out += struct.pack(">HH", 0xBEDE, extension_words)
    return out


def seal(mode: str, key: bytes, header: bytes, plaintext: bytes, counter: int) -> bytes:
    """Encrypt ``plaintext`` with ``header`` as AAD and append tag and 4-byte nonce counter."""
    nonce_counter = struct.pack(">I", counter)
    if mode == XCHACHA:
        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, header, nonce_counter + bytes(20), key)
    elif mode == AES_GCM:
        sealed = AESGCM(key).encrypt(nonce_counter + bytes(8), plaintext, header)
    else:
        raise ValueError(mode)
    return header + sealed + nonce_counter


def voice_datagram(
    mode: str,
    key: bytes,
    frame: bytes,
    *,
    sequence: int,
    timestamp: int,
    ssrc: int,
    counter: int | None = None,
    csrcs: tuple[int, ...] = (),
    extension_body: bytes | None = None,
    padding: int = 0,
    payload_type: int = OPUS_PT,
) -> bytes:
    """A complete encrypted datagram carrying ``frame``.

    ``extension_body`` must be a multiple of 4 bytes; ``padding`` > 0 appends
    that many padding bytes, the last one holding the count.
    """
    words = None if extension_body is None else len(extension_body) // 4
    header = rtp_header(
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_type=payload_type,
        csrcs=csrcs,
        extension_words=words,
        padding=padding > 0,
    )
    plaintext = (extension_body or b"") + frame
    if padding:
        plaintext += bytes(padding - 1) + bytes([padding])
    return seal(mode, key, header, plaintext, sequence if counter is None else counter)
