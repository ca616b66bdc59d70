"""Network copies are counted as ``duplicate`` before DAVE, never as DAVE failures.

The filter itself (bot/voice/duplicates.py) is checked on sequence numbers; the
receiver is checked with a real davey group, whose sessions refuse a nonce
twice, so a copy that slipped through would show up as ``dave:*``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import davey
import pytest

from bot.voice.duplicates import RESTART_JUMP, WINDOW, DuplicateFilter
from bot.voice.receiver import VoiceReceiver
from bot.voice.ssrc_map import SsrcMap
from bot.voice.stats import ReceiveStats

from .dave_group import settled_group
from .packets import XCHACHA, voice_datagram
from .sink import ListSink

SENDER, BOT, SSRC = 111, 222, 0x5EED
KEY = bytes(range(32))


@dataclass
class _ConnectionState:
    dave_session: Any
    dave_protocol_version: int


def _verdicts(sequences: list[int], ssrc: int = 1) -> list[str | None]:
    dedup = DuplicateFilter()
    return [dedup.check(ssrc, seq) for seq in sequences]


def test_reordering_within_the_window_passes_and_copies_do_not() -> None:
    assert _verdicts([10, 12, 11, 15, 13, 14, 11, 15, 16]) == [None] * 6 + ["duplicate", "duplicate", None]


def test_sequence_wrap() -> None:
    assert _verdicts([65533, 65535, 0, 1, 65534, 65535, 0, 2]) == [None] * 5 + ["duplicate", "duplicate", None]


def test_window_edge_and_stale() -> None:
    top = 5000
    assert _verdicts([top - WINDOW + 1, top, top - WINDOW + 1, top - WINDOW + 2, top - WINDOW]) == [
        None, None, "duplicate", None, "stale",
    ]


def test_a_big_forward_jump_forgets_the_old_window() -> None:
    # 300 ahead: everything the window knew is now too old to judge.
    assert _verdicts([100, 101, 401, 101, 400, 400]) == [None, None, None, "stale", None, "duplicate"]


def test_restarted_sender_far_behind_passes_once_then_the_window_follows_it() -> None:
    top = 40_000
    back = top - RESTART_JUMP
    assert _verdicts([top, back + 1, back, back, back + 1, top + 1]) == [None, "stale", None, "duplicate", None, None]


def test_streams_are_separate_and_bounded() -> None:
    dedup = DuplicateFilter(max_streams=2)
    assert [dedup.check(s, 7) for s in (1, 2, 1, 2)] == [None, None, "duplicate", "duplicate"]
    assert dedup.check(3, 7) is None  # ssrc 1 is forgotten: its next packet starts a fresh window
    assert [dedup.check(1, 7), dedup.check(3, 7)] == [None, "duplicate"]


@pytest.fixture(scope="module")
def group() -> dict[int, Any]:
    return settled_group([SENDER, BOT])


def _receiver(members: dict[int, Any]) -> tuple[VoiceReceiver, ListSink, SsrcMap[Any]]:
    sink = ListSink()
    ssrc_map: SsrcMap[Any] = SsrcMap()
    ssrc_map.bind(SSRC, SENDER)
    receiver = VoiceReceiver(sink, _ConnectionState(members[BOT].session, 1), ssrc_map)
    receiver.set_transport(XCHACHA, KEY)
    return receiver, sink, ssrc_map


def _datagram(members: dict[int, Any], opus: bytes, seq: int, *, ssrc: int = SSRC, counter: int | None = None) -> bytes:
    frame = members[SENDER].encrypt_opus(opus)
    return voice_datagram(XCHACHA, KEY, frame, sequence=seq, timestamp=960 * seq, ssrc=ssrc, counter=counter)


def test_copies_of_a_dave_frame_are_duplicates_not_dave_failures(group: dict[int, Any]) -> None:
    receiver, sink, _ = _receiver(group)
    frame = group[SENDER].encrypt_opus(b"\x78" + os.urandom(40))
    sealed = [voice_datagram(XCHACHA, KEY, frame, sequence=9, timestamp=0, ssrc=SSRC, counter=c) for c in (1, 1, 2)]
    for data in sealed:  # the same datagram twice, then re-sealed (a copy made before transport encryption)
        receiver.on_datagram(data)
    stats = receiver.stats()
    assert stats == ReceiveStats(datagrams=3, accepted=1, duplicate=2, held=0)
    assert len(sink.packets) == 1
    # What the copies would have met without the filter: davey refuses a frame it has opened.
    with pytest.raises(ValueError, match="DecryptionFailed"):
        group[BOT].session.decrypt(SENDER, davey.MediaType.audio, frame)


def test_reordered_dave_frames_all_open(group: dict[int, Any]) -> None:
    receiver, sink, _ = _receiver(group)
    frames = {seq: group[SENDER].encrypt_opus(bytes([seq & 0xFF]) * 30) for seq in range(65530, 65536)}
    frames.update({seq: group[SENDER].encrypt_opus(bytes([seq]) * 30) for seq in range(4)})
    order = [65530, 65532, 65531, 65534, 65533, 0, 65535, 2, 1, 3, 65531, 1]
    for seq in order:
        receiver.on_datagram(voice_datagram(XCHACHA, KEY, frames[seq], sequence=seq, timestamp=0, ssrc=SSRC))
    stats = receiver.stats()
    assert stats == ReceiveStats(datagrams=12, accepted=10, duplicate=2, held=0)
    assert [p.sequence for _, p in sink.packets] == order[:10]
    assert [p.opus for _, p in sink.packets] == [bytes([seq & 0xFF]) * 30 for seq in order[:10]]


def test_a_reconnect_with_a_new_ssrc_reuses_sequence_numbers(group: dict[int, Any]) -> None:
    receiver, sink, ssrc_map = _receiver(group)
    ssrc_map.bind(SSRC + 1, SENDER)
    for ssrc in (SSRC, SSRC + 1):
        for seq in (1, 2):
            receiver.on_datagram(_datagram(group, b"\x78" + bytes([seq, ssrc & 0xFF]) * 8, seq, ssrc=ssrc))
    assert receiver.stats() == ReceiveStats(datagrams=4, accepted=4, held=0)
    assert [(p.ssrc, p.sequence) for _, p in sink.packets] == [(SSRC, 1), (SSRC, 2), (SSRC + 1, 1), (SSRC + 1, 2)]


def test_replays_of_old_packets(group: dict[int, Any]) -> None:
    """An old datagram replayed (valid transport tag, DAVE frame already opened).

    Inside the window it is a duplicate; up to RESTART_JUMP behind it is stale
    (the sink would count it late); further back the filter takes it for a
    restarted sender, as the sink would, and DAVE refuses the replayed nonce.
    The live stream goes on unharmed in every case.
    """
    receiver, sink, _ = _receiver(group)
    start = 10_000
    sent = {}
    for seq in (start - RESTART_JUMP - 5, start - 500, *range(start, start + 10)):
        sent[seq] = _datagram(group, b"\x78" + seq.to_bytes(2, "big") * 10, seq)
        receiver.on_datagram(sent[seq])
    assert receiver.stats().accepted == 12
    for old in (start + 2, start - 500, start - RESTART_JUMP - 5):
        receiver.on_datagram(sent[old])
    receiver.on_datagram(_datagram(group, b"\x78live", start + 10))
    stats = receiver.stats()
    assert stats == ReceiveStats(
        datagrams=16, accepted=13, duplicate=1, stale=1, held=0,
        dave_failures={"dave:DecryptionFailed:NoValidCryptorFound": 1},
    )
    assert sink.packets[-1][1].opus == b"\x78live"


def test_held_copies_are_caught_when_released(group: dict[int, Any]) -> None:
    receiver, sink, ssrc_map = _receiver(group)
    late = SSRC + 7
    first = _datagram(group, b"\x78held", 5, ssrc=late)
    for data in (first, first, _datagram(group, b"\x78next", 6, ssrc=late)):
        receiver.on_datagram(data)
    assert receiver.stats().held == 3
    ssrc_map.bind(late, SENDER)  # SPEAKING comes after the audio
    receiver.on_datagram(first)
    stats = receiver.stats()
    assert stats == ReceiveStats(datagrams=4, accepted=2, duplicate=2, held=0)
    assert not stats.dave_failures
    assert [p.opus for _, p in sink.packets] == [b"\x78held", b"\x78next"]
