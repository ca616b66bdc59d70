"""The receive pipeline: drops by reason, hold and release, filters, DAVE, key changes."""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import dataclass
from typing import Any

import davey
import pytest

from bot.voice.receiver import VoiceReceiver
from bot.voice.ssrc_map import SsrcMap
from bot.voice.stats import ReceiveStats

from .packets import AES_GCM, XCHACHA, voice_datagram
from .sink import ListSink

USER, SSRC = 4242, 0x1234


@dataclass
class _ConnectionState:
    dave_session: Any = None
    dave_protocol_version: int = 0


class _Clock:
    def __init__(self) -> None:
        self._ticks = itertools.count(1)

    def __call__(self) -> float:
        return float(next(self._ticks))


def _receiver(mode: str = XCHACHA, **kwargs: Any) -> tuple[VoiceReceiver, ListSink, SsrcMap[Any], bytes]:
    key = os.urandom(32)
    sink = ListSink()
    ssrc_map: SsrcMap[Any] = SsrcMap()
    state = kwargs.pop("state", _ConnectionState())
    receiver = VoiceReceiver(sink, state, ssrc_map, clock=_Clock(), **kwargs)
    receiver.set_transport(mode, list(key))
    return receiver, sink, ssrc_map, key


def _accounted(stats: ReceiveStats) -> int:
    return stats.accepted + stats.held + stats.dropped


@pytest.mark.parametrize("mode", [XCHACHA, AES_GCM])
def test_frames_reach_the_sink(mode: str) -> None:
    receiver, sink, ssrc_map, key = _receiver(mode)
    ssrc_map.bind(SSRC, USER)
    frames = [os.urandom(20 + i) for i in range(5)]
    for i, frame in enumerate(frames):
        receiver.on_datagram(
            voice_datagram(mode, key, frame, sequence=(65533 + i) & 0xFFFF, timestamp=960 * i, ssrc=SSRC,
                           extension_body=b"\xbe\xde\x00\x01" if i % 2 else None, padding=i)
        )
    assert [p.opus for _, p in sink.packets] == frames
    assert {u for u, _ in sink.packets} == {USER}
    first = sink.packets[0][1]
    assert (first.sequence, first.timestamp, first.ssrc, first.received_at) == (65533, 0, SSRC, 1.0)
    assert receiver.stats() == ReceiveStats(datagrams=5, accepted=5, held=0)


def test_drops_are_counted_by_reason() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    ssrc_map.bind(SSRC, USER)
    good = voice_datagram(XCHACHA, key, b"frame", sequence=1, timestamp=2, ssrc=SSRC)
    discovery = bytearray(74)
    struct.pack_into(">HHI", discovery, 0, 2, 70, SSRC)
    tampered = bytearray(good)
    tampered[-8] ^= 0x40
    fed = [
        good[:7],  # too_short
        bytes([0x81, 201]) + bytes(30),  # rtcp
        bytes(discovery),  # ip_discovery
        bytes(40),  # not_rtp
        voice_datagram(XCHACHA, key, b"vp8", sequence=1, timestamp=2, ssrc=SSRC + 1, payload_type=103),
        bytes(tampered),  # auth_failed
        good[:30],  # truncated
        bytes([0x8F]) + good[1:20],  # bad_header: 15 CSRCs do not fit in 20 bytes
        voice_datagram(XCHACHA, key, b"", sequence=1, timestamp=2, ssrc=SSRC, padding=3),  # empty_frame
        good,
    ]
    for data in fed:
        receiver.on_datagram(data)
    stats = receiver.stats()
    assert stats == ReceiveStats(
        datagrams=10, accepted=1, held=0, too_short=1, rtcp=1, ip_discovery=1,
        not_rtp=1, not_opus=1, auth_failed=1, truncated=1, bad_header=1, empty_frame=1,
    )
    assert len(sink.packets) == 1


def test_no_key_yet() -> None:
    sink = ListSink()
    receiver = VoiceReceiver(sink, _ConnectionState(), SsrcMap())
    receiver.on_datagram(voice_datagram(XCHACHA, bytes(32), b"f", sequence=1, timestamp=2, ssrc=SSRC))
    assert receiver.stats().no_key == 1


def test_held_until_speaking_then_released_in_order() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    for seq in range(10):
        receiver.on_datagram(voice_datagram(XCHACHA, key, bytes([seq]) * 4, sequence=seq, timestamp=960 * seq, ssrc=SSRC))
    assert sink.packets == [] and receiver.stats().held == 10
    ssrc_map.bind(SSRC, USER)  # SPEAKING, from the event loop
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"\x0a" * 4, sequence=10, timestamp=9600, ssrc=SSRC))
    assert [p.sequence for _, p in sink.packets] == list(range(11))
    assert [p.received_at for _, p in sink.packets] == [float(i) for i in range(1, 12)]
    assert receiver.stats() == ReceiveStats(datagrams=11, accepted=11, held=0)


def test_release_triggered_by_another_speakers_packet() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    ssrc_map.bind(2, 22)
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"held", sequence=5, timestamp=0, ssrc=SSRC))
    ssrc_map.bind(SSRC, USER)
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"other", sequence=1, timestamp=0, ssrc=2))
    assert [(u, p.opus) for u, p in sink.packets] == [(USER, b"held"), (22, b"other")]


def test_overflowing_hold_is_counted() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    for seq in range(130):
        receiver.on_datagram(voice_datagram(XCHACHA, key, b"f", sequence=seq, timestamp=0, ssrc=SSRC))
    stats = receiver.stats()
    assert stats.unmapped_overflow == 30 and stats.held == 100
    assert _accounted(stats) == stats.datagrams == 130


def test_excluded_users_are_never_written() -> None:
    receiver, sink, ssrc_map, key = _receiver(should_record=lambda user_id: user_id != 13)
    ssrc_map.bind(1, 13)
    ssrc_map.bind(2, 14)
    for ssrc in (1, 2, 1):
        receiver.on_datagram(voice_datagram(XCHACHA, key, b"f", sequence=1, timestamp=0, ssrc=ssrc))
    assert [u for u, _ in sink.packets] == [14]
    assert receiver.stats().excluded == 2


def test_dave_failures_are_counted_and_silence_passes() -> None:
    state = _ConnectionState(davey.DaveSession(1, 1, 2), 1)
    receiver, sink, ssrc_map, key = _receiver(state=state)
    ssrc_map.bind(SSRC, USER)
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"\x01" * 20 + b"\xfa\xfa", sequence=1, timestamp=0, ssrc=SSRC))
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"\xf8\xff\xfe", sequence=2, timestamp=960, ssrc=SSRC))
    assert [p.opus for _, p in sink.packets] == [b"\xf8\xff\xfe"]
    assert receiver.stats().dave_failures["dave:NoDecryptorForUser"] == 1


def test_full_sink_is_counted() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    ssrc_map.bind(SSRC, USER)
    sink.accept = False
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"f", sequence=1, timestamp=0, ssrc=SSRC))
    assert receiver.stats().sink_full == 1 and sink.refused == 1


def test_new_session_key_replaces_the_old() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    ssrc_map.bind(SSRC, USER)
    new_key = os.urandom(32)
    receiver.set_transport(AES_GCM, new_key)
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"old", sequence=1, timestamp=0, ssrc=SSRC))
    receiver.on_datagram(voice_datagram(AES_GCM, new_key, b"new", sequence=2, timestamp=0, ssrc=SSRC))
    assert [p.opus for _, p in sink.packets] == [b"new"]
    assert receiver.stats().auth_failed == 1


def test_media_sealed_with_an_awaited_key_waits_for_it() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    ssrc_map.bind(SSRC, USER)
    new_key = os.urandom(32)
    receiver.await_new_key()
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"old", sequence=1, timestamp=0, ssrc=SSRC))
    receiver.on_datagram(voice_datagram(AES_GCM, new_key, b"early", sequence=2, timestamp=960, ssrc=SSRC))
    receiver.on_datagram(voice_datagram(AES_GCM, os.urandom(32), b"junk", sequence=9, timestamp=0, ssrc=SSRC))
    assert [p.opus for _, p in sink.packets] == [b"old"]
    assert receiver.stats().held == 2
    receiver.set_transport(AES_GCM, new_key)
    receiver.on_datagram(voice_datagram(AES_GCM, new_key, b"late", sequence=3, timestamp=1920, ssrc=SSRC))
    # The early packet keeps the arrival time it had before its key came.
    assert [(p.opus, p.received_at) for _, p in sink.packets] == [(b"old", 1.0), (b"early", 2.0), (b"late", 4.0)]
    stats = receiver.stats()
    assert stats.held == 0 and stats.auth_failed == 1  # the junk: no key opens it
    assert _accounted(stats) == stats.datagrams == 4


def test_held_sealed_media_is_counted_at_close() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    ssrc_map.bind(SSRC, USER)
    receiver.await_new_key()
    receiver.on_datagram(voice_datagram(AES_GCM, os.urandom(32), b"x", sequence=1, timestamp=0, ssrc=SSRC))
    receiver.close()
    stats = receiver.stats()
    assert stats.auth_failed == 1 and stats.held == 0 and not sink.packets


def test_close_flushes_the_hold_and_refuses_later_datagrams() -> None:
    receiver, sink, ssrc_map, key = _receiver()
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"a", sequence=1, timestamp=0, ssrc=1))
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"b", sequence=1, timestamp=0, ssrc=2))
    ssrc_map.bind(1, 11)
    receiver.close()
    receiver.on_datagram(voice_datagram(XCHACHA, key, b"c", sequence=2, timestamp=0, ssrc=1))
    assert [(u, p.opus) for u, p in sink.packets] == [(11, b"a")]
    stats = receiver.stats()
    assert stats == ReceiveStats(datagrams=3, accepted=1, held=0, unmapped_at_close=1, closed=1)
