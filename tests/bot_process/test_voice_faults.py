"""Voice faults in the middle of a recording, through the real bot process (issues #4 and #7).

Two speakers talk without pause while the loopback Discord breaks the bot's
voice connection one way per test: the voice websocket aborted (1006, a
network drop: discord.py leaves, rejoins and identifies anew), closed with
4015 (resumable: the same voice session resumes), UDP silent for 10 s, the
guild's voice moved to another server (new VOICE_SERVER_UPDATE, discord.py
closes with 4014 and identifies at the new endpoint), and the bot kicked out
of the channel.

The ground truth is what the fake put on the wire to the bot (it logs the
``(ssrc, seq)`` of each media packet sent to the bot, whichever connection
that is) and who could open each frame (the DAVE group it was sealed for:
frames a speaker sends while the bot rejoins, before its key package is
committed, nobody outside the group can open, and the bot must count each as
a DAVE failure). Every fault but the kick must end in the recording going on
in the same files: every frame delivered before the fault and after the bot
is back that the bot could open sample-exact in the WAV where the engine's
contract puts it (tests/receive_loopback/truth.py: within 20 ms of its capture
time, or of the fastest recent arrival where the loaded fake sent late),
silence where nothing arrived, tracks of one length.
The kick must end in a clean, announced stop after which the guild can record
again. Nothing waits on a guessed time: each step waits for what the fake
observes (a new or resumed voice session, media reaching the bot again), and
nothing assumes when media stops or starts flowing: what was sent in between
is measured, not required.

Each test prints what the fault cost per speaker: milliseconds of talk the
speakers produced after the fault that are not in the WAV (``-s`` shows them).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sinks import VoicePacket
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE
from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.speakers import SentFrame
from tests.receive_loopback.truth import Run, match_track, sent_frames

from .checks import ALIGNMENT, manifest, origin_guess, read_wav, recording_id
from .conftest import REPLY_TIMEOUT, BotProcess

SPEAKERS = ("alice", "bob")
#: Both talk from 0.3 s on, longer than any test runs; the test ends the scenario.
NONSTOP = Scenario(
    speakers=tuple(SpeakerSpec(name, pitch, talks=(Talk(0.3, 300.0),))
                   for name, pitch in zip(SPEAKERS, (210.0, 110.0))),
    duration=300.0,
)
#: Talk that must reach the bot before a fault, and again after it, per speaker.
SETTLED_FRAMES = 75
#: The engine conceals at most this many frames after a hole (PLC), and one before
#: the next packet (FEC); between them a hole must be silence.
_PLC_FRAMES = 5
#: How long the UDP outage lasts.
SILENCE_SECONDS = 10.0
#: How many frames before the one where the reference parts from the WAV may be the one
#: the engine never got (it conceals a lost frame, so the reference parts at the next).
_SUSPECTS = 3


@dataclass
class FaultRecording:
    """One recording of NONSTOP with the fake logging what it sent to the bot."""

    fake: FakeDiscord
    bot: BotProcess
    rid: str
    runner: ScenarioRunner
    delivered: list[tuple[int, int]]

    @property
    def bot_id(self) -> int:
        return self.fake.config["bot_user_id"]

    def connection(self) -> Any:
        """The fake's voice session of the bot (None while it has none)."""
        return dict(self.fake.voice.connections).get((self.fake.config["guild_id"], self.bot_id))

    def frames_after(self, since: float) -> dict[str, int]:
        """Per speaker, frames sent after monotonic `since` that reached the bot."""
        got = set(list(self.delivered))
        return {name: sum(1 for f in list(self.runner.truth(name))
                          if f.seq is not None and f.mono_time > since and (f.ssrc, f.seq) in got)
                for name in SPEAKERS}

    def wait_talk(self, since: float, what: str, also: Callable[[], bool] = lambda: True) -> None:
        """Until `also()` holds and each speaker got SETTLED_FRAMES frames sent after `since` to the bot."""
        self.fake.wait_for(lambda: also() and min(self.frames_after(since).values()) >= SETTLED_FRAMES,
                           timeout=REPLY_TIMEOUT, what=what)

    def stop(self) -> Any:
        """End the talk, then the recording; returns the bot's answer to /record stop."""
        self.fake.run(self.runner.stop())
        reply = self.bot.ask("record", "stop")
        assert not reply.ephemeral and f"Recording `{self.rid}`" in reply.content, reply.content
        return reply


def _begin(fake: FakeDiscord, bot: BotProcess) -> FaultRecording:
    delivered = fake.run(lambda: fake.voice.log_deliveries(fake.config["bot_user_id"]))
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(NONSTOP)
    rec = FaultRecording(fake, bot, rid, runner, delivered)
    rec.wait_talk(0.0, "talk reaching the bot before the fault")
    return rec


@dataclass
class SpeakerResult:
    """What one speaker's track holds of what was sent."""

    #: Where each frame found sample-exact is: (ssrc, seq) -> (position, offset from its due
    #: time); None for a frame that decodes to silence (it cannot be located).
    found: dict[tuple[int, int], tuple[int, int] | None]
    #: Talk delivered to the bot that the WAV does not hold sample-exact, in ms: DAVE frames
    #: sealed for a group the bot was not in (sent while it was rejoining), packets sent
    #: between the fault and the bot's return that never reached it, frames the engine cut
    #: where it moved a late anchor back.
    unopened_ms: int
    #: Talk produced after the fault that is not in the WAV sample-exact: never delivered
    #: (the bot was out), held back by the sender while DAVE re-keyed the group around the
    #: bot's leave and rejoin, or delivered and not in the WAV (above).
    lost_ms: int
    #: The longest silent stretch between two frames found in the WAV, in ms.
    hole_ms: int
    #: Delivered frames sealed for a DAVE group without the bot: nobody outside it can open them.
    sealed_away: int
    #: Frames it could open, sent between the fault and its return, that are not in the WAV.
    unread_around_fault: int


def _check_continued(rec: FaultRecording, fault_at: float, back_at: float) -> dict[str, SpeakerResult]:
    """The recording went on in the same files. Every frame delivered before `fault_at` or
    after `back_at` that the bot could open is in the WAV sample-exact where the engine's
    contract puts it (tests/receive_loopback/truth.py: within 20 ms of its capture time, or
    of the fastest recent arrival where the sender sent late; where the anchor moves back, a
    run may lose the frames that lateness spans), so both speakers' on-time frames are
    aligned by their capture time; holes are silent; tracks have one length. Frames the fake sealed for a DAVE group the bot was not in (sent while it was
    rejoining) nobody outside that group can open: they are left out of the reference, and
    the bot must count each as a DAVE failure (and no other, but frames sent around the
    fault). What was sent between the fault and the bot's return is measured, not required. Returns per speaker what is in the WAV and what is lost."""
    folder = rec.bot.recordings_dir / rec.rid
    meta = manifest(folder)
    assert meta["status"] == "finished", meta["status"]
    members = rec.fake.config["members"]
    files = {int(s["user_id"]): s["file"] for s in meta["speakers"]}
    assert set(files) == {members[n] for n in SPEAKERS}, files
    assert sorted(p.name for p in folder.glob("*.wav")) == sorted(files.values()), "not one file per speaker"
    tracks = {name: read_wav(folder / files[members[name]]) for name in SPEAKERS}
    assert len({len(w) for w in tracks.values()}) == 1, {n: len(w) for n, w in tracks.items()}

    origin = origin_guess(rec.runner, meta["started_at"])
    got = set(rec.delivered)
    results: dict[str, SpeakerResult] = {}
    for name, wav in tracks.items():
        truth = rec.runner.truth(name)
        sent = sent_frames(truth)
        delivered = [f for f in truth if f.seq is not None and (f.ssrc, f.seq) in got]
        openable = [f for f in delivered if f.readers is None or rec.bot_id in f.readers]
        packets = [VoicePacket(f.seq, f.timestamp, f.opus, f.mono_time, f.ssrc) for f in openable]
        window = {(f.ssrc, f.seq) for f in openable if fault_at <= f.mono_time <= back_at}
        runs, problems = _reference(wav, packets, sent, origin, window)
        assert not problems, f"{name}: " + "; ".join(problems[:3])
        misplaced = [(r.label, r.offset, r.late) for r in runs if r.offset is not None and not r.placed_within]
        assert not misplaced, (f"{name}: runs misplaced (worst offset from capture time, highest floor; "
                               f"samples, budget {ALIGNMENT} beyond the floor): {misplaced}")
        found = _found(runs, sent, origin)
        absent = [f for f in truth if not f.silence and (f.seq is None or (f.ssrc, f.seq) not in found)]
        unopened = [f for f in absent if (f.ssrc, f.seq) in got]
        hole = _silent_holes(wav, sorted(at[0] for at in found.values() if at is not None), name)
        lost = sum(1 for f in absent if f.mono_time >= fault_at)
        results[name] = SpeakerResult(found, len(unopened) * 20, lost * 20, round(hole / 48),
                                      len(delivered) - len(openable), len(window - set(found)))
    print("  offsets from capture time (samples): "
          + "; ".join(f"{n} {_offset_ranges(r.found)}" for n, r in results.items()))
    stats = _receive_stats(rec.bot)
    sealed_away = sum(r.sealed_away for r in results.values())
    print(f"  the bot's receive counters: {stats}; frames sealed for a DAVE group without the bot: {sealed_away}")
    # Besides those, only frames sent around the fault may have failed (read after the bot's
    # DAVE session was reset for the new connection); the rest are all in the WAV.
    failures = sum(n for reason, n in stats.items() if reason.startswith("dave:"))
    unread = sum(r.unread_around_fault for r in results.values())
    assert sealed_away <= failures <= sealed_away + unread, (
        f"the bot failed to open {failures} DAVE frames; {sealed_away} delivered were sealed for a group "
        f"without it, {unread} sent around the fault are not in the WAV")
    return results


def _reference(wav: np.ndarray, packets: list[VoicePacket], sent: dict[tuple[int, int], SentFrame],
               origin: float, window: set[tuple[int, int]]) -> tuple[list[Run], list[str]]:
    """:func:`match_track` of `packets`, less the frames of `window` (sent between the fault
    and the bot's return) the engine never got: a frame missing from the reference changes
    how the engine decoded every frame after it (concealment), so while a run is not found,
    the frames of `window` just before the first of its frames not in the WAV are left out
    one at a time, nearest first, keeping each that lets more of the track be found. Frames
    outside `window` are never left out: the bot had them all."""
    runs, problems = match_track(wav, packets, sent, origin)
    while problems:
        missing = next(r for r in runs if r.missing)
        diverges = _first_not_found(wav, missing, sent, origin)
        ext = {id(p): i for i, p in enumerate(packets)}
        suspects = [p for p in packets[max(0, ext[id(diverges)] - _SUSPECTS):ext[id(diverges)] + 1]
                    if p.ssrc == diverges.ssrc and (p.ssrc, p.sequence) in window]
        for suspect in reversed(suspects):
            trial = [p for p in packets if p is not suspect]
            trial_runs, trial_problems = match_track(wav, trial, sent, origin)
            if _progress(trial_runs, trial_problems) > _progress(runs, problems):
                packets, runs, problems = trial, trial_runs, trial_problems
                break
        else:
            break
    return runs, problems


def _first_not_found(wav: np.ndarray, run: Run, sent: dict[tuple[int, int], SentFrame],
                     origin: float) -> VoicePacket:
    """The first frame of `run` (its reference decode) with sound that is nowhere near its
    capture time in `wav` (within a second): where the engine's decoding parted from it."""
    due = round((sent[(run.ssrc, run.packets[0].sequence)].scheduled - origin) * SAMPLE_RATE)
    for k, packet in enumerate(run.packets):
        frame = run.pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
        if not frame.any():
            continue
        around = due + k * FRAME_SAMPLES
        lo, hi = max(0, around - SAMPLE_RATE), min(len(wav), around + SAMPLE_RATE + FRAME_SAMPLES)
        if hi - lo < FRAME_SAMPLES:
            return packet
        windows = np.lib.stride_tricks.sliding_window_view(wav[lo:hi], FRAME_SAMPLES)
        if not (windows == frame).all(axis=1).any():
            return packet
    return run.packets[-1]


def _progress(runs: list[Run], problems: list[str]) -> tuple[int, float]:
    """How much of a track a reference finds: fewer runs missing, then the first missing
    one starting later (it is found up to there)."""
    first = next((r for r in runs if r.missing), None)
    return -len(problems), first.packets[0].received_at if first is not None else float("inf")


def _found(runs: list[Run], sent: dict[tuple[int, int], SentFrame],
           origin: float) -> dict[tuple[int, int], tuple[int, int] | None]:
    """Where each frame of the placed `runs` is: (ssrc, seq) -> (position, offset from its
    capture time); None for a frame that decodes to silence; frames cut are left out."""
    found: dict[tuple[int, int], tuple[int, int] | None] = {}
    for run in runs:
        due = round((sent[(run.ssrc, run.packets[0].sequence)].scheduled - origin) * SAMPLE_RATE)
        frames = run.pcm.reshape(-1, FRAME_SAMPLES)
        for k, packet in enumerate(run.packets):
            offset = run.offsets[k] if run.offsets else None
            if not frames[k].any():
                found[(packet.ssrc, packet.sequence)] = None
            elif offset is not None:
                found[(packet.ssrc, packet.sequence)] = (due + k * FRAME_SAMPLES + offset, offset)
    return found


def _offset_ranges(found: dict[tuple[int, int], tuple[int, int] | None]) -> str:
    """The offsets of a speaker's found frames, as ranges of equal values in WAV order."""
    placed = sorted(at for at in found.values() if at is not None)
    ranges: list[list[int]] = []
    for position, offset in placed:
        if ranges and ranges[-1][2] == offset:
            ranges[-1][1] = position
        else:
            ranges.append([position, position, offset])
    return ", ".join(f"{offset} at {start / SAMPLE_RATE:.2f}-{end / SAMPLE_RATE:.2f} s" for start, end, offset in ranges)


def _receive_stats(bot: BotProcess) -> dict[str, int]:
    """The receive counters the bot logged when the recording stopped."""
    found = re.findall(r"recording stopped in channel \d+: (\{.*\})", bot.log())
    assert found, "the bot logged no receive counters"
    return ast.literal_eval(found[-1])


def _silent_holes(wav: np.ndarray, positions: list[int], name: str) -> int:
    """The longest stretch between two frames found; asserts each such hole is silence apart
    from the engine's concealment at its edges (PLC after, FEC before). Returns it in samples."""
    longest = 0
    for before, after in zip(positions, positions[1:]):
        end = before + FRAME_SAMPLES
        longest = max(longest, after - end)
        quiet_from, quiet_to = end + _PLC_FRAMES * FRAME_SAMPLES, after - FRAME_SAMPLES
        if quiet_to > quiet_from:
            loud = np.flatnonzero(wav[quiet_from:quiet_to])
            assert len(loud) == 0, f"{name}: sound in a hole at sample {quiet_from + int(loud[0])}"
    return longest


def _report(fault: str, results: dict[str, SpeakerResult]) -> None:
    print(f"{fault}: " + ", ".join(f"{n} lost {r.lost_ms} ms (longest silent stretch {r.hole_ms} ms; "
                                   f"delivered but not in the WAV {r.unopened_ms} ms)" for n, r in results.items()))


def _continued_after(fake: FakeDiscord, start_bot: Callable[..., BotProcess], fault: str,
                     inject: Callable[[FaultRecording], None],
                     back: Callable[[FaultRecording, Any], bool]) -> tuple[dict[str, SpeakerResult], FaultRecording]:
    """Record, inject a fault, wait until `back(rec, old_connection)` and talk reaches the bot
    again, stop, and check the recording went on; returns the per-speaker results."""
    bot = start_bot()
    rec = _begin(fake, bot)
    old = rec.connection()
    assert old is not None and old.joined
    fault_at = time.monotonic()
    inject(rec)
    back_at: list[float] = []

    def is_back() -> bool:
        if not back_at and back(rec, old):
            back_at.append(time.monotonic())
        return bool(back_at)

    rec.wait_talk(fault_at, f"talk reaching the bot again after {fault}", also=is_back)
    rec.stop()
    results = _check_continued(rec, fault_at, back_at[0])
    _report(fault, results)
    return results, rec


def _identified_anew(rec: FaultRecording, old: Any) -> bool:
    conn = rec.connection()
    return conn is not None and conn is not old and conn.joined


def test_voice_websocket_dropped_reconnects_into_the_same_files(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    def drop(rec: FaultRecording) -> None:
        assert fake.force_close_voice(rec.bot_id, 1006) == 1

    results, _ = _continued_after(fake, start_bot, "voice websocket aborted (1006)", drop, _identified_anew)
    for name, result in results.items():
        assert result.hole_ms > 0, f"{name}: the drop left no hole; was anything lost?"


def test_voice_websocket_closed_4015_resumes_into_the_same_files(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    old_ws: list[Any] = []

    def close(rec: FaultRecording) -> None:
        old_ws.append(rec.connection().ws)
        assert fake.force_close_voice(rec.bot_id, 4015) == 1

    def resumed(rec: FaultRecording, old: Any) -> bool:
        conn = rec.connection()
        # RESUME keeps the session (and SSRC); only the websocket is new.
        return conn is old and conn.ws is not None and conn.ws is not old_ws[0] and conn.joined

    _, rec = _continued_after(fake, start_bot, "voice websocket closed with 4015 (resumed)", close, resumed)
    assert "resuming the voice session" in rec.bot.log()


def test_udp_silent_for_ten_seconds_is_silence_in_the_same_files(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    def silence(rec: FaultRecording) -> None:
        fake.silence_udp(SILENCE_SECONDS)

    def after_outage(rec: FaultRecording, old: Any) -> bool:
        return rec.connection() is old  # the websocket stayed up: nothing reconnected

    results, _ = _continued_after(fake, start_bot, f"UDP silent for {SILENCE_SECONDS:g} s", silence, after_outage)
    for name, result in results.items():
        assert result.hole_ms >= (SILENCE_SECONDS - 0.1) * 1000, f"{name}: hole of {result.hole_ms} ms"


def test_voice_server_moved_continues_in_the_same_files(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    def move(rec: FaultRecording) -> None:
        assert fake.move_voice_server() != fake.voice.endpoints[0].address

    def moved(rec: FaultRecording, old: Any) -> bool:
        conn = rec.connection()
        return _identified_anew(rec, old) and conn.media is not old.media

    _continued_after(fake, start_bot, "voice server moved (4014, new endpoint)", move, moved)


def test_kicked_from_the_channel_stops_cleanly_and_says_why(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    rec = _begin(fake, bot)
    kicking_at = time.monotonic()
    assert fake.kick_from_voice(rec.bot_id) == 1
    kicked_at = time.monotonic()
    text_channel = fake.config["text_channel_id"]
    notice = fake.wait_for(
        lambda: next((m for m in fake.messages(text_channel) if "Recording stopped:" in m.content), None),
        timeout=REPLY_TIMEOUT, what="the announced stop")
    announced_after = notice.created - time.time() + time.monotonic() - kicked_at
    assert "the bot was disconnected from the voice channel" in notice.content, notice.content
    assert f"Recording `{rec.rid}`" in notice.content, notice.content
    fake.run(rec.runner.stop())
    # Everything that reached the bot before the kick is in the finalized files, sample-exact
    # and aligned; after the kick nothing can reach it.
    results = _check_continued(rec, kicking_at, kicked_at)
    print(f"kicked from the channel: stop announced {announced_after:.1f} s after the kick; talk delivered "
          "before the kick but not in the WAV: " + ", ".join(f"{n} {r.unopened_ms} ms" for n, r in results.items()))
    # The session is gone: nothing to stop, and the guild may record again.
    answer = bot.ask("record", "stop")
    assert answer.ephemeral and answer.content == "Nothing is being recorded in this server.", answer.content
    again = bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]})
    assert recording_id(again) != rec.rid, again.content
    assert not bot.ask("record", "stop").ephemeral
