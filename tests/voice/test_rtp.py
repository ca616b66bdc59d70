"""RTP header parsing, datagram classification and payload stripping."""

from __future__ import annotations

import struct

import pytest

from bot.voice.rtp import DatagramKind, PayloadError, RtpHeader, classify, strip_payload

from .packets import rtp_header


def test_plain_header() -> None:
    data = rtp_header(sequence=513, timestamp=0xDEADBEEF, ssrc=0x01020304, marker=True) + b"payload"
    header = RtpHeader.parse(data)
    assert header is not None
    assert (header.sequence, header.timestamp, header.ssrc) == (513, 0xDEADBEEF, 0x01020304)
    assert header.payload_type == 120 and header.marker
    assert not header.padding and not header.extension
    assert header.csrc_count == 0 and header.header_length == 12 and header.extension_length == 0


def test_csrc_and_extension_lengths() -> None:
    data = rtp_header(sequence=1, timestamp=2, ssrc=3, csrcs=(7, 8, 9), extension_words=5, padding=True)
    header = RtpHeader.parse(data + b"x" * 30)
    assert header is not None
    assert header.csrc_count == 3 and header.extension and header.padding
    # AAD: fixed 12 + 3 CSRCs + the 4-byte preamble only (the body is encrypted)
    assert header.header_length == 12 + 12 + 4
    assert header.extension_length == 5


@pytest.mark.parametrize("cut", range(0, 28))
def test_truncated_headers_are_none(cut: int) -> None:
    full = rtp_header(sequence=1, timestamp=2, ssrc=3, csrcs=(7, 8, 9), extension_words=1)
    assert len(full) == 28
    assert RtpHeader.parse(full[:cut]) is None
    assert RtpHeader.parse(full) is not None


def test_wrong_version_and_extension_profile() -> None:
    data = bytearray(rtp_header(sequence=1, timestamp=2, ssrc=3, extension_words=1) + bytes(8))
    assert RtpHeader.parse(bytes(data)) is not None
    data[12] = 0x10  # profile 0x10DE instead of 0xBEDE
    assert RtpHeader.parse(bytes(data)) is None
    data[12] = 0xBE
    data[0] = (data[0] & 0x3F) | 0x40  # version 1
    assert RtpHeader.parse(bytes(data)) is None


def test_classify() -> None:
    assert classify(b"\x80\x78" + bytes(5)) is DatagramKind.TOO_SHORT
    assert classify(rtp_header(sequence=1, timestamp=2, ssrc=3) + b"\x01") is DatagramKind.RTP
    for packet_type in range(200, 205):
        assert classify(bytes([0x81, packet_type]) + bytes(30)) is DatagramKind.RTCP
    assert classify(bytes([0x80, 0xC5]) + bytes(30)) is DatagramKind.RTP  # 197: marker + PT 69
    reply = bytearray(74)
    struct.pack_into(">HHI", reply, 0, 2, 70, 1234)
    assert classify(bytes(reply)) is DatagramKind.IP_DISCOVERY
    assert classify(bytes(reply[:73])) is DatagramKind.NOT_RTP
    assert classify(bytes(40)) is DatagramKind.NOT_RTP


def _header(extension_words: int | None, padding: bool) -> RtpHeader:
    header = RtpHeader.parse(rtp_header(sequence=1, timestamp=2, ssrc=3, extension_words=extension_words, padding=padding))
    assert header is not None
    return header


def test_strip_exact() -> None:
    frame = bytes(range(40))
    body = b"EXT1EXT2"
    assert strip_payload(_header(2, True), body + frame + b"\x00\x00\x03") == frame
    assert strip_payload(_header(None, False), frame) == frame
    assert strip_payload(_header(2, False), body + frame) == frame
    assert strip_payload(_header(None, True), frame + b"\x01") == frame


@pytest.mark.parametrize(
    ("words", "padding", "plaintext", "reason"),
    [
        (3, False, b"12345678", "bad_extension"),
        (None, True, b"abc\x00", "bad_padding"),
        (None, True, b"abc\x05", "bad_padding"),
        (1, True, b"EXT1ab\x04", "bad_padding"),
        (1, True, b"EXT1ab\x03", "empty_frame"),
        (None, True, b"", "bad_padding"),
        (1, False, b"EXT1", "empty_frame"),
        (None, True, b"b\x03\x03", "empty_frame"),
    ],
)
def test_strip_rejects_lies(words: int | None, padding: bool, plaintext: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        strip_payload(_header(words, padding), plaintext)
    assert info.value.reason == reason
