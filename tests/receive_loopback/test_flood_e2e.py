"""A flood of hostile datagrams at ten times the speakers' packet rate, during a real recording.

Three speakers talk continuously through the loopback Discord (real UDP,
DAVE on); meanwhile the fake's own media socket (the only address the bot's
connected UDP socket accepts) sends 1500 hostile datagrams a second of eight
kinds (:mod:`tests.fakediscord.flood`). Nothing may raise, the speakers'
tracks must be exactly what they sent, and every flood datagram must end in
the receiver counter its kind leads to. A datagram the kernel dropped for a
full socket buffer never reaches the receiver; ``/proc/net/udp`` counts those
for the bot's socket, and each one loosens the per-kind check by one.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.fakediscord.flood import FATES, KINDS
from tests.fakediscord.scenario import Event, Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .session import RecordingSession

SPEAKERS = (("alice", 210.0), ("bob", 110.0), ("carol", 160.0))
TALK = (0.3, 6.3)
#: Ten times the speakers' 3 x 50 packets a second.
FLOOD_RATE = 10 * len(SPEAKERS) * 50
FLOOD = (0.5, 5.5)  # start, seconds

SCENARIO = Scenario(
    speakers=tuple(SpeakerSpec(name, pitch, talks=(Talk(*TALK),)) for name, pitch in SPEAKERS),
    events=(Event(FLOOD[0], "flood", count=FLOOD_RATE, seconds=FLOOD[1]),),
    duration=6.6,
)


def _udp_drops(port: int) -> int:
    """Datagrams the kernel dropped for the IPv4 UDP socket bound to ``port`` (``/proc/net/udp``)."""
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[-1])
    raise LookupError(f"no UDP socket on port {port}")


def _speaker(session: RecordingSession, runner: Any, name: str) -> tuple[int, int]:
    """Check one speaker's track; return (frames on the wire, frames the sink never got)."""
    track = session.checked_track(runner.speakers[name])
    return len(track.sent), len(set(track.sent) - {(p.ssrc, p.sequence) for p in track.handed})


def test_hostile_flood_is_counted_and_harmless(dave_fake: FakeDiscord, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with RecordingSession(dave_fake, tmp_path) as session:
        port = session.connection.socket.getsockname()[1]
        drops_before = _udp_drops(port)
        session.record()
        sent_before = dave_fake.voice.media.stats.sent
        runner = session.play(SCENARIO)
        session.wait_played()
        drops = _udp_drops(port) - drops_before
        sent_to_bot = dave_fake.voice.media.stats.sent - sent_before
        assert session.connection._socket_reader.is_alive(), "discord.py's socket reader died"
        assert session.vc.receive_error is None, session.vc.receive_error  # type: ignore[union-attr]
        stats = session.stop()
        receive, sink = stats.receive.as_dict(), stats.engine
        assert sink.failure is None

        flood = runner.floods[0].sent
        flooded = sum(flood.values())
        speakers = {name: _speaker(session, runner, name) for name, _ in SPEAKERS}

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    # The bot got everything the fake sent it, but what the kernel dropped.
    assert receive["datagrams"] + drops == sent_to_bot, (receive["datagrams"], drops, sent_to_bot)
    assert sum(n for k, n in receive.items() if k != "datagrams") == receive["datagrams"]
    assert receive["held"] == 0
    # The flood ran at full rate, every kind of it.
    assert set(flood) == set(KINDS), flood
    assert flooded >= FLOOD_RATE * FLOOD[1] * 0.95, flooded
    counted = {kind: sum(receive.get(reason, 0) for reason in FATES[kind]) for kind in KINDS}
    for kind in KINDS:
        assert flood[kind] - drops <= counted[kind] <= flood[kind], (kind, flood[kind], counted[kind], drops)
    # Nothing else was refused: every other datagram was a speaker's frame, and the sink took it.
    fates = {reason for reasons in FATES.values() for reason in reasons}
    other = {k: n for k, n in receive.items() if k not in fates and k not in ("datagrams", "accepted", "held") and n}
    assert not other, other
    real_sent = sum(total for total, _ in speakers.values())
    real_lost = sum(lost for _, lost in speakers.values())
    assert real_lost <= drops, speakers
    assert receive["accepted"] == real_sent - real_lost
    assert sink.decode_errors == sink.invalid == sink.dropped == 0

    print(f"\nflood: {flooded} hostile datagrams in {FLOOD[1]} s ({FLOOD_RATE}/s) among {real_sent} real frames "
          f"of {len(SPEAKERS)} speakers; kernel drops {drops}; real frames lost {real_lost}")
    for kind in KINDS:
        reasons = ", ".join(f"{r} {receive.get(r, 0)}" for r in FATES[kind])
        print(f"  {kind:<13} sent {flood[kind]:>5}  ->  {reasons}")
