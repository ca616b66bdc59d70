"""Fuzzing the receive pipeline: nothing raises, every datagram is accounted for once.

Authentic lies (length fields that pass the AEAD check because they were
sealed under the right key) are generated too, since only those reach the
extension/padding/CSRC checks behind the transport decryption.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.voice.receiver import VoiceReceiver
from bot.voice.ssrc_map import SsrcMap

from .packets import XCHACHA, seal, voice_datagram
from .sink import ListSink

KEY = bytes(range(32))
REAL_USER, REAL_SSRC = 9001, 0xCAFE
#: The real stream's own SSRC (same user): noise never uses it, so no noise
#: datagram can take a real frame's sequence number and make it a duplicate.
STREAM_SSRC = 0xBEEF


@dataclass
class _ConnectionState:
    dave_session: Any = None
    dave_protocol_version: int = 0


def _valid(seq: int, ssrc: int = REAL_SSRC, **kwargs: Any) -> bytes:
    return voice_datagram(XCHACHA, KEY, b"real" + struct.pack(">H", seq), sequence=seq, timestamp=960 * seq, ssrc=ssrc, **kwargs)


def _not_stream(ssrc: int) -> bool:
    return ssrc != STREAM_SSRC


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid datagram (with random CSRC/extension/padding), then bit flips or a cut."""
    seq = draw(st.integers(0, 0xFFFF))
    data = bytearray(
        _valid(
            seq,
            ssrc=draw(st.sampled_from([REAL_SSRC, 1, 2, draw(st.integers(0, 2**32 - 1).filter(_not_stream))])),
            csrcs=tuple(draw(st.lists(st.integers(0, 2**32 - 1), max_size=3))),
            extension_body=draw(st.one_of(st.none(), st.binary(max_size=3).map(lambda b: b.ljust(4, b"\0")))),
            padding=draw(st.integers(0, 4)),
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@st.composite
def authentic_lie(draw: st.DrawFn) -> bytes:
    """Header bits, extension length and padding byte chosen at random, sealed under the real key.

    The AAD is cut where the declared header ends (as an honest sender's
    would be), so these pass authentication and reach the length checks: an
    extension length or padding count that lies about the plaintext.
    """
    csrc_count = draw(st.integers(0, 15))
    extension = draw(st.booleans())
    first = 0x80 | (0x20 if draw(st.booleans()) else 0) | (0x10 if extension else 0) | csrc_count
    ssrc = draw(st.sampled_from([REAL_SSRC, 7]))
    header = bytes([first, 120]) + struct.pack(">HII", draw(st.integers(0, 0xFFFF)), 0, ssrc)
    header += draw(st.binary(min_size=4 * csrc_count, max_size=4 * csrc_count))
    if extension:
        header += struct.pack(">HH", 0xBEDE, draw(st.integers(0, 0xFFFF)))
    plaintext = draw(st.binary(max_size=40))
    if plaintext and draw(st.booleans()):
        plaintext = plaintext[:-1] + bytes([draw(st.integers(0, 255))])
    return seal(XCHACHA, KEY, header, plaintext, draw(st.integers(0, 2**32 - 1)))


datagrams = st.one_of(st.binary(max_size=120), mutated(), authentic_lie())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(datagrams, max_size=60), st.integers(0, 2**32 - 1))
def test_nothing_raises_and_everything_is_accounted_for(noise: list[bytes], salt: int) -> None:
    sink = ListSink()
    ssrc_map: SsrcMap[Any] = SsrcMap(hold_per_ssrc=8, max_unmapped=4)
    ssrc_map.bind(REAL_SSRC, REAL_USER)
    ssrc_map.bind(STREAM_SSRC, REAL_USER)
    receiver = VoiceReceiver(sink, _ConnectionState(), ssrc_map)
    receiver.set_transport(XCHACHA, KEY)
    real_frames = []
    for index, data in enumerate(noise):
        receiver.on_datagram(data)
        if index % 3 == 0:
            seq = (salt + index) & 0xFFFF
            frame = b"real" + struct.pack(">H", seq) + os.urandom(4)
            real_frames.append(frame)
            receiver.on_datagram(voice_datagram(XCHACHA, KEY, frame, sequence=seq, timestamp=0, ssrc=STREAM_SSRC))
    fed = len(noise) + len(real_frames)
    stats = receiver.stats()
    assert stats.datagrams == fed
    assert stats.accepted + stats.held + stats.dropped == fed
    assert stats.accepted == len(sink.packets)
    written = {p.opus for user, p in sink.packets if user == REAL_USER}
    assert set(real_frames) <= written
    receiver.close()
    final = receiver.stats()
    assert final.held == 0
    assert final.accepted + final.held + final.dropped == fed
