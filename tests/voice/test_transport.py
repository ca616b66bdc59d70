"""Transport decryption for both rtpsize modes, against an independent encryptor."""

from __future__ import annotations

import os

import pytest

from bot.voice.rtp import RtpHeader, strip_payload
from bot.voice.transport import TransportError, UnsupportedModeError, create_decryptor

from .packets import AES_GCM, XCHACHA, voice_datagram

MODES = (XCHACHA, AES_GCM)


def _open(mode: str, key: bytes, data: bytes) -> bytes:
    header = RtpHeader.parse(data)
    assert header is not None
    return strip_payload(header, create_decryptor(mode, list(key)).decrypt(data, header))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("csrcs", "extension", "padding"),
    [((), None, 0), ((11, 12), None, 0), ((), b"\x10\x00\x00\x00BODY", 0), ((5,), b"abcd", 7), ((), None, 1)],
)
def test_round_trip(mode: str, csrcs: tuple[int, ...], extension: bytes | None, padding: int) -> None:
    key = os.urandom(32)
    frame = os.urandom(57)
    data = voice_datagram(
        mode, key, frame, sequence=40000, timestamp=123456, ssrc=99, counter=0xFFFFFFF0,
        csrcs=csrcs, extension_body=extension, padding=padding,
    )
    assert _open(mode, key, data) == frame


@pytest.mark.parametrize("mode", MODES)
def test_tampering_fails_authentication(mode: str) -> None:
    key = os.urandom(32)
    data = voice_datagram(mode, key, b"opus frame", sequence=1, timestamp=2, ssrc=3, extension_body=b"abcd")
    header = RtpHeader.parse(data)
    assert header is not None
    decryptor = create_decryptor(mode, key)
    assert decryptor.decrypt(data, header)
    # flip one bit in: the fixed header (AAD), the extension preamble (AAD),
    # the ciphertext, the tag, the nonce counter
    for index in (2, 14, header.header_length + 1, len(data) - 6, len(data) - 1):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        with pytest.raises(TransportError) as info:
            decryptor.decrypt(bytes(tampered), header)
        assert info.value.reason == "auth_failed"
    with pytest.raises(TransportError) as info:
        create_decryptor(mode, os.urandom(32)).decrypt(data, header)
    assert info.value.reason == "auth_failed"


@pytest.mark.parametrize("mode", MODES)
def test_truncated(mode: str) -> None:
    key = os.urandom(32)
    data = voice_datagram(mode, key, b"", sequence=1, timestamp=2, ssrc=3)
    header = RtpHeader.parse(data)
    assert header is not None
    assert create_decryptor(mode, key).decrypt(data, header) == b""
    with pytest.raises(TransportError) as info:
        create_decryptor(mode, key).decrypt(data[:-1], header)
    assert info.value.reason == "truncated"


def test_unsupported() -> None:
    with pytest.raises(UnsupportedModeError, match="xsalsa20_poly1305"):
        create_decryptor("xsalsa20_poly1305", bytes(32))
    with pytest.raises(UnsupportedModeError, match="16 bytes"):
        create_decryptor(XCHACHA, bytes(16))
