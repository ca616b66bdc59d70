"""rtp.py: packets and rtpsize transport encryption, checked by an independent decryptor."""

import struct

import nacl.secret
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakediscord.rtp import (
    MODE_AES_GCM,
    MODE_XCHACHA,
    SILENCE_FRAME,
    RtpPacket,
    TransportCipher,
    audio_level_extension,
    rtcp_sender_report,
)

KEY = bytes(range(32))


def _open(mode: str, key: bytes, datagram: bytes) -> tuple[dict, bytes]:
    """Straight from the spec: header, optional CSRCs and BEDE preamble are AAD."""
    first, pt, seq, ts, ssrc = struct.unpack_from(">BBHII", datagram)
    aad_len = 12 + 4 * (first & 0x0F)
    ext_words = 0
    if first & 0x10:
        profile, ext_words = struct.unpack_from(">HH", datagram, aad_len)
        assert profile == 0xBEDE
        aad_len += 4
    aad, body, counter = datagram[:aad_len], datagram[aad_len:-4], datagram[-4:]
    if mode == MODE_XCHACHA:
        plain = nacl.secret.Aead(key).decrypt(body, aad, counter + bytes(20))
    else:
        plain = AESGCM(key).decrypt(counter + bytes(8), body, aad)
    plain = plain[4 * ext_words:]
    if first & 0x20:
        plain = plain[:-plain[-1]]
    return {"pt": pt, "seq": seq, "ts": ts, "ssrc": ssrc, "first": first,
            "counter": struct.unpack(">I", counter)[0]}, plain


@pytest.mark.parametrize("mode", [MODE_XCHACHA, MODE_AES_GCM])
@pytest.mark.parametrize("extension,padding", [(b"", 0), (audio_level_extension(40), 0),
                                               (b"", 7), (audio_level_extension(3) * 2, 1)])
def test_sealed_packet_opens_with_independent_code(mode, extension, padding):
    cipher = TransportCipher(mode, KEY, first_counter=41)
    frame = bytes(range(100, 180))
    packet = RtpPacket(seq=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF, payload=frame,
                       extension=extension, padding=padding)
    first = cipher.seal_rtp(packet)
    second = cipher.seal_rtp(packet)
    header, plain = _open(mode, KEY, first)
    assert plain == frame
    assert header == {"pt": 0x78, "seq": 65535, "ts": 2**32 - 1, "ssrc": 0xDEADBEEF,
                      "first": 0x80 | (0x10 if extension else 0) | (0x20 if padding else 0),
                      "counter": 41}
    assert _open(mode, KEY, second)[0]["counter"] == 42
    assert len(first) == 12 + (4 + len(extension) if extension else 0) + len(frame) + padding + 16 + 4


def test_tampered_header_fails_authentication():
    datagram = bytearray(TransportCipher(MODE_XCHACHA, KEY).seal_rtp(
        RtpPacket(seq=1, timestamp=2, ssrc=3, payload=SILENCE_FRAME)))
    datagram[3] ^= 1  # the sequence number is authenticated data
    with pytest.raises(Exception):
        _open(MODE_XCHACHA, KEY, bytes(datagram))


def test_rtcp_report_is_recognisable_and_sealed():
    clear, secret = rtcp_sender_report(ssrc=7, ntp=1, rtp_timestamp=960, packets=3, octets=9)
    datagram = TransportCipher(MODE_AES_GCM, KEY).seal(clear, secret)
    assert datagram[1] == 200 and struct.unpack_from(">I", datagram, 4)[0] == 7
    plain = AESGCM(KEY).decrypt(datagram[-4:] + bytes(8), datagram[8:-4], datagram[:8])
    assert struct.unpack(">QIII", plain) == (1, 960, 3, 9)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        RtpPacket(seq=0, timestamp=0, ssrc=0, payload=b"", extension=b"abc")
    with pytest.raises(ValueError):
        TransportCipher("xsalsa20_poly1305", KEY)
    with pytest.raises(ValueError):
        TransportCipher(MODE_XCHACHA, KEY[:16])
