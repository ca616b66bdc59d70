"""discord.py + RecordingVoiceClient through the loopback Discord into the real AudioSink.

Each test plays a scripted scenario (real Opus, real DAVE unless off, real
UDP and TLS), records it, and compares every speaker's WAV with the offline
decode of exactly the frames the speaker sent (see :mod:`tests.receive_loopback.truth`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.voice.stats import ReceiveStats
from sinks import EngineStats
from sinks.opus import SAMPLE_RATE
from tests.fakediscord.impair import Impairment
from tests.fakediscord.scenario import Event, Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .session import RecordingSession

THREE_SPEAKERS = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.2), Talk(1.6, 2.5)), leave=2.8),
        SpeakerSpec("bob", 110.0, talks=(Talk(1.4, 2.4), Talk(3.0, 4.0, speaking_delay=0.1)), join=1.0),
        SpeakerSpec("carol", 160.0, talks=(Talk(0.4, 1.8), Talk(2.2, 4.2)),
                    impairment=Impairment(loss=0.08, reorder=0.15, duplicate=0.05, seed=7)),
    ),
    duration=4.5,
)


def _dave_failures(receive: ReceiveStats) -> int:
    return sum(receive.dave_failures.values())


def _check_speaker(session: RecordingSession, runner: ScenarioRunner, name: str) -> dict[str, Any]:
    """Everything about one speaker's track; returns numbers for further asserts."""
    track = session.checked_track(runner.speakers[name])
    on_wire = {key for key, f in track.sent.items() if f.fate != "dropped"}
    got = {(p.ssrc, p.sequence) for p in track.handed}
    return {"missing": on_wire - got, "extra": got - on_wire, "wav": track.wav, "sent": track.sent,
            "handed": track.handed, "too_late": len(track.too_late)}


def _first_after_hold(frames: list[Any], key: tuple[int, int]) -> bool:
    """Whether the frame ``key`` (ssrc, seq) was the first one sent after the speaker held media."""
    index = next(i for i, f in enumerate(frames) if (f.ssrc, f.seq) == key)
    return index > 0 and frames[index - 1].fate == "held" and frames[index].fate in ("delayed", "duplicated")


def _expected_lost(sent: dict[tuple[int, int], Any], handed: list[Any]) -> int:
    """Sequence numbers never handed over between the first and last handed one, per SSRC."""
    lost = 0
    for ssrc in {p.ssrc for p in handed}:
        seqs = {p.sequence for p in handed if p.ssrc == ssrc}
        first = min(seqs, key=lambda s: sent[(ssrc, s)].mono_time)
        last = max(seqs, key=lambda s: sent[(ssrc, s)].mono_time)
        span = (last - first) & 0xFFFF
        lost += span + 1 - len(seqs)
    return lost


def _record_three_speakers(fake: FakeDiscord, tmp_path: Path) -> None:
    with RecordingSession(fake, tmp_path) as session:
        sink = session.record()
        runner = session.play(THREE_SPEAKERS)
        session.wait_played()
        stats = session.stop()
        receive, sink_stats = stats.receive, stats.engine
        assert sink.failure is None
        dave = fake.voice.dave_version > 0

        checked = {name: _check_speaker(session, runner, name) for name in ("alice", "bob", "carol")}
        missing = {name: result["missing"] for name, result in checked.items()}
        for name, result in checked.items():
            assert not result["extra"], (name, result["extra"])
            for key in result["missing"]:
                # The one frame DAVE may refuse: the first after a key change, when a
                # later one overtook it (davey takes the first nonce it sees under a
                # new key as its floor). Never on a link that does not reorder.
                assert dave and _first_after_hold(runner.speakers[name].frames, key), (name, key)
        copies = sum(len(f.delays) - 1 for s in runner.speakers.values() for f in s.frames if f.delays)
        lost_to_dave = sum(len(m) for m in missing.values())
        # Every datagram was accepted, a network copy (caught before DAVE, which
        # would refuse its nonce), or refused by DAVE: an overtaken first frame
        # after a key change.
        assert receive.datagrams == receive.accepted + receive.duplicate + _dave_failures(receive)
        assert receive.duplicate == copies > 0, (copies, receive)
        assert _dave_failures(receive) == lost_to_dave, receive
        carol = checked["carol"]
        dropped = sum(1 for f in carol["sent"].values() if f.fate == "dropped")
        assert dropped > 0 and any(f.fate == "delayed" for f in carol["sent"].values())
        # A packet overtaken by more than the reorder window (a loaded machine delays the
        # impairment's delayed copies further) comes after its slot was committed: the
        # engine counted it lost, then late, and never decoded it.
        too_late = sum(r["too_late"] for r in checked.values())
        assert sink_stats.late == too_late, (sink_stats.late, too_late)
        assert sink_stats.lost == _expected_lost(carol["sent"], carol["handed"]) + too_late > 0
        assert sink_stats.decoded + too_late == sum(
            len({(p.ssrc, p.sequence) for p in r["handed"]}) for r in checked.values())
        assert sink_stats.decode_errors == sink_stats.invalid == sink_stats.dropped == 0
        assert receive.accepted == sum(len(r["handed"]) for r in checked.values())
        lengths = {len(r["wav"]) for r in checked.values()}
        assert len(lengths) == 1, lengths
        # alice left at 2.8 s: her track is silent from then on but as long as the others.
        alice = checked["alice"]["wav"]
        left = round((runner.started_mono + 2.8 - sink.started_at) * SAMPLE_RATE)
        assert not alice[left:].any()


def test_three_speakers_with_dave(dave_fake: FakeDiscord, tmp_path: Path) -> None:
    _record_three_speakers(dave_fake, tmp_path)


def test_three_speakers_without_dave(plain_fake: FakeDiscord, tmp_path: Path) -> None:
    _record_three_speakers(plain_fake, tmp_path)


def _record(session: RecordingSession, scenario: Scenario) -> tuple[ScenarioRunner, ReceiveStats, EngineStats]:
    session.record()
    runner = session.play(scenario)
    session.wait_played()
    stats = session.stop()
    assert session.sink.failure is None  # type: ignore[union-attr]
    return runner, stats.receive, stats.engine


def test_dave_epoch_changes_while_others_talk(dave_fake: FakeDiscord, tmp_path: Path) -> None:
    scenario = Scenario(
        speakers=(
            SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 3.6),)),
            SpeakerSpec("bob", 110.0, talks=(Talk(0.3, 3.6),)),
            SpeakerSpec("carol", 160.0, talks=(Talk(1.0, 1.4),), join=0.8, leave=1.6),
            SpeakerSpec("dave", 130.0, talks=(Talk(2.2, 2.6),), join=2.0, leave=2.9),
        ),
        duration=3.8,
    )
    with RecordingSession(dave_fake, tmp_path) as session:
        session.record()
        runner = session.play(scenario)
        session.wait_dave_ready()
        first_epoch = session.connection.dave_session.epoch
        session.wait_played()
        last_epoch = session.connection.dave_session.epoch
        receive = session.stop().receive
        # Two joins and two leaves, each its own commit.
        assert last_epoch >= first_epoch + 4, (first_epoch, last_epoch)
        assert _dave_failures(receive) == 0, receive
        assert receive.datagrams == receive.accepted
        for name in ("alice", "bob", "carol", "dave"):
            result = _check_speaker(session, runner, name)
            assert not result["missing"] and not result["extra"], (name, result["missing"])
        # Talking through four transitions, alice and bob held media, and their audio is all
        # there. A transition holds media as long as the bot takes to answer it: an answer
        # within one 20 ms tick holds no frame, so not every transition shows (3 of 4 seen).
        for name in ("alice", "bob"):
            held = sum(1 for f in runner.truth(name) if f.fate == "held")
            assert held >= 1, (name, held)


def test_garbage_and_rtcp_are_counted_and_harmless(dave_fake: FakeDiscord, tmp_path: Path) -> None:
    scenario = Scenario(
        speakers=(
            SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 2.6),)),
            SpeakerSpec("bob", 110.0, talks=(Talk(0.5, 2.6),)),
        ),
        events=(Event(1.0, "garbage", count=40), Event(1.5, "rtcp", count=5), Event(2.0, "garbage", count=30)),
        duration=2.8,
    )
    with RecordingSession(dave_fake, tmp_path) as session:
        runner, receive, sink_stats = _record(session, scenario)
        for name in ("alice", "bob"):
            result = _check_speaker(session, runner, name)
            assert not result["missing"] and not result["extra"], (name, result["missing"])
        refused = {k: n for k, n in receive.as_dict().items() if k not in ("datagrams", "accepted", "held")}
        assert _dave_failures(receive) == 0, receive
        # Every junk datagram and sender report ends in a reason counter (one receiving client here).
        assert sum(refused.values()) == 40 + 30 + 5 * 2, receive
        assert receive.rtcp >= 10, receive
        assert len(refused) >= 3, receive
        assert sink_stats.invalid == sink_stats.decode_errors == 0
