"""A restart of the bot mid-recording resumes the same recording on the same timeline.

Two speakers talk without pause. The bot is killed (SIGKILL) or stopped
(SIGTERM) and started again on the same data while they go on talking: it
must rejoin, continue the same recording (one id, one link), say in the
channel how long it was away, and write the audio after the restart
sample-exact at its capture time on the recording's clock, so the time away
is silence of that length and the tracks stay aligned and of equal length.
When nobody is left in the channel at the restart, the recording is finished
instead; an opted-out member stays out of the resumed recording. SIGINT stops
the bot for good: its recordings are finished, not paused.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bot.nickname import RECORDING_MARK
from sinks import VoicePacket
from sinks.opus import SAMPLE_RATE, OpusDecoder
from sinks.talk import talk_blocks
from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.speakers import SentFrame
from tests.receive_loopback.truth import ALIGNMENT, SEARCH, Run, match_track, sent_frames

from .checks import manifest, origin_guess, read_wav, recording_id, refusal, wait_posted, wire_packets
from .conftest import REPLY_TIMEOUT, BotProcess

SPEAKERS = ("alice", "bob")
#: Everybody talks from 0.3 s on, far longer than the test runs.
NONSTOP = Scenario(
    speakers=tuple(SpeakerSpec(name, pitch, talks=(Talk(0.3, 300.0),))
                   for name, pitch in zip(SPEAKERS, (210.0, 110.0))),
    duration=300.0,
)
#: Talk recorded before the restart, and after the bot is back.
TALK_BEFORE = 3.0
TALK_AFTER = 4.0
#: What a SIGKILL may lose before the kill (the engine refreshes headers every 0.8 s).
CRASH_LOSS = 1.0
_MISSING = re.compile(r"resumed after a restart of the bot; ([\d.]+) s are missing")


def _wait_nick(fake: FakeDiscord, wanted: str | None) -> None:
    def nick() -> str | None:
        return fake.world.guilds[fake.config["guild_id"]].members[fake.config["bot_user_id"]].nick
    fake.wait_for(lambda: nick() == wanted or None, REPLY_TIMEOUT, f"the bot's nickname to be {wanted!r}")


def _talk(wav: np.ndarray) -> float:
    """Seconds of talk in a whole track, by the rule the engine counts with while recording."""
    return float(talk_blocks(wav.reshape(-1, 1)).sum()) * 0.02


def _record_until_talked(fake: FakeDiscord, bot: BotProcess, scenario: Scenario) -> tuple[str, ScenarioRunner]:
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(scenario)
    _wait_talk(fake, runner, [s.name for s in scenario.speakers], time.monotonic() + TALK_BEFORE)
    return rid, runner


def _wait_talk(fake: FakeDiscord, runner: ScenarioRunner, names: list[str], until: float) -> None:
    """Until every speaker in `names` has sent a frame captured after monotonic `until`."""
    fake.wait_for(lambda: all(any(f.seq is not None and f.scheduled > until for f in runner.truth(n))
                              for n in names),
                  timeout=REPLY_TIMEOUT + until - time.monotonic(), what="the speakers to talk on")


def _record_then_pause(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> tuple[str, ScenarioRunner, float]:
    """Record everybody talking, then SIGTERM: (recording id, the talk, when the signal went)."""
    bot = start_bot()
    rid, runner = _record_until_talked(fake, bot, NONSTOP)
    terminated_at = time.monotonic()
    assert bot.terminate() == 0
    wait_posted(fake, [fake.config["voice_channel_id"], fake.config["text_channel_id"]],
                f"Recording `{rid}` is paused: the bot is restarting.", REPLY_TIMEOUT)
    return rid, runner, terminated_at


def _restart(fake: FakeDiscord, start_bot: Callable[..., BotProcess], rid: str) -> tuple[BotProcess, float, float]:
    """Start the bot again; returns it, when its "resumed" notice was seen (monotonic) and the seconds it says
    are missing."""
    # Discord drops the voice state of a client whose process is gone; the loopback
    # Discord leaves that to the test.
    fake.kick_from_voice(fake.config["bot_user_id"])
    bot = start_bot()
    channels = [fake.config["voice_channel_id"], fake.config["text_channel_id"]]
    notice = wait_posted(fake, channels, f"Recording `{rid}` resumed after a restart", REPLY_TIMEOUT)
    seen = time.monotonic()
    missing = _MISSING.search(notice.content)
    assert missing, notice.content
    return bot, seen, float(missing.group(1))


def _stop_same_recording(fake: FakeDiscord, bot: BotProcess, rid: str) -> Path:
    """/record stop ends `rid` itself: one recording, one link."""
    reply = bot.ask("record", "stop")
    assert f"Recording `{rid}`" in reply.content, reply.content
    assert reply.content.count("/r/") == 1, reply.content
    assert [p.name for p in bot.recordings_dir.iterdir() if p.is_dir()] == [rid]
    return bot.recordings_dir / rid


def _runs_after_restart(wav: np.ndarray, runner: ScenarioRunner, name: str, origin: float,
                        cut: float, back: float, before: float) -> list[Run]:
    """The runs `name` sent after the restart (up to monotonic `before`), found sample-exact in `wav`.

    The restarted bot decodes with a new decoder from the first packet it got
    after rejoining, sent after the old process ended (`cut`) and before its
    "resumed" notice was seen (`back`); only the WAV tells which. The reference
    decodes from each candidate in turn and keeps the one under which every
    run is there exactly.
    """
    packets = wire_packets(runner, name, before)
    sent = sent_frames(runner.truth(name))
    candidates = [i for i, p in enumerate(packets) if cut <= p.received_at <= back + 1.0]
    assert candidates, f"{name} sent nothing after the restart"
    tried: list[str] = []
    for first in candidates:
        if not _starts_here(wav, packets[first:first + _PROBE_FRAMES], sent, origin):
            continue
        runs, problems = match_track(wav, packets[first:], sent, origin)
        if not problems and all(r.offset is not None for r in runs):
            return runs
        tried.append(f"from seq {packets[first].sequence}: {problems[:2]}")
    raise AssertionError(f"{name}: the audio after the restart is not in the track sample-exact at its capture time "
                         f"({len(candidates)} candidate first packets; starts found: {tried[:3]})")


#: Frames decoded to try a candidate first packet before the whole comparison.
_PROBE_FRAMES = 10


def _starts_here(wav: np.ndarray, probe: list[VoicePacket], sent: dict[tuple[int, int], SentFrame],
                 origin: float) -> bool:
    """Whether a fresh decoder's output of `probe` stands in `wav` sample-exact near where
    its first packet was captured."""
    decoder = OpusDecoder(1)
    pcm = np.concatenate([decoder.decode(p.opus)[:, 0].copy() for p in probe])  # decode reuses its buffer
    expected = round((sent[(probe[0].ssrc, probe[0].sequence)].scheduled - origin) * SAMPLE_RATE)
    # As far off as the full comparison looks: how far off it is, the alignment check judges.
    low = max(0, expected - SEARCH)
    window = wav[low:expected + SEARCH + len(pcm)]
    if not pcm.any() or len(window) < len(pcm):
        return False
    loud = int(np.abs(pcm.astype(np.int32)).argmax())
    hits = np.flatnonzero(window[loud:len(window) - len(pcm) + loud + 1] == pcm[loud])
    return any(np.array_equal(window[h:h + len(pcm)], pcm) for h in hits)


def _check_resumed(folder: Path, runner: ScenarioRunner, members: dict[str, int], *, cut: float,
                   kept_until: float, back: float, stopped: float, missing: float) -> list[str]:
    """Every speaker's track holds, sample-exact and within 20 ms of its capture time, the
    talk before the restart (sent before `kept_until`) and after it (from the bot's return
    `back` to `stopped`); the silence between is the time away; the tracks have one length.
    Returns printable figures."""
    meta = manifest(folder)
    assert meta["status"] == "finished", meta
    by_user = {int(s["user_id"]): s["file"] for s in meta["speakers"]}
    assert set(by_user) == {members[n] for n in SPEAKERS}
    origin = origin_guess(runner, meta["started_at"])
    tracks = {n: read_wav(folder / by_user[members[n]]) for n in SPEAKERS}
    for speaker in meta["speakers"]:  # talk time adds up both parts
        whole = _talk(read_wav(folder / speaker["file"]))
        assert abs(speaker["talk_seconds"] - whole) <= 0.1, (speaker, whole)
    lengths = {n: len(w) for n, w in tracks.items()}
    assert len(set(lengths.values())) == 1, f"tracks of different lengths: {lengths}"
    figures = []
    offsets: list[tuple[str, int]] = []
    for name, wav in tracks.items():
        before, problems = match_track(wav, wire_packets(runner, name, kept_until),
                                       sent_frames(runner.truth(name)), origin)
        assert not problems, f"{name} before the restart: " + "; ".join(problems[:5])
        after = _runs_after_restart(wav, runner, name, origin, cut, back, stopped - 1.0)
        offsets += [(name, r.offset) for r in before + after if r.offset is not None]
        first_after = after[0]
        assert first_after.position is not None
        heard_before = np.flatnonzero(wav[:first_after.position])
        silent = (first_after.position - (heard_before[-1] + 1)) / SAMPLE_RATE
        captured = sent_frames(runner.truth(name))[(first_after.ssrc, first_after.packets[0].sequence)].scheduled
        away = captured - cut
        # The silence runs from the last audio kept (at most CRASH_LOSS before the cut) to the first after.
        assert away - 0.1 <= silent <= away + CRASH_LOSS, f"{name}: {silent:.2f} s silent for {away:.2f} s away"
        assert abs(missing - away) <= CRASH_LOSS + 0.5, f"announced {missing} s missing, {away:.2f} s away"
        figures.append(f"{name}: away {away:.2f} s, silent {silent:.2f} s in the track, announced {missing:g} s, "
                       f"offsets from capture {[r.offset for r in before]} before, {[r.offset for r in after]} after")
    # As everywhere in these tests: every run of every speaker, before and after the
    # restart, at one offset from its capture time within one 20 ms frame.
    values = [o for _, o in offsets]
    assert max(values) - min(values) <= ALIGNMENT, f"runs disagree on their offset from capture time: {offsets}"
    return figures


def test_a_killed_bot_resumes_the_same_recording_on_its_timeline(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    members = fake.config["members"]
    bot = start_bot()
    rid, runner = _record_until_talked(fake, bot, NONSTOP)
    killed_at = time.monotonic()
    bot.kill()
    bot, back, missing = _restart(fake, start_bot, rid)
    # The restart cleared the dead process's REC mark, and the resumed recording shows one again.
    _wait_nick(fake, f"{RECORDING_MARK} {fake.world.users[fake.config['bot_user_id']].username}")
    _wait_talk(fake, runner, list(SPEAKERS), back + TALK_AFTER)
    folder = _stop_same_recording(fake, bot, rid)
    stopped = time.monotonic()
    _wait_nick(fake, None)
    fake.run(runner.stop())
    figures = _check_resumed(folder, runner, members, cut=killed_at, kept_until=killed_at - CRASH_LOSS - 0.5,
                             back=back, stopped=stopped, missing=missing)
    print("SIGKILL:", "; ".join(figures))


def test_a_bot_stopped_by_sigterm_resumes_the_same_recording_on_its_timeline(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    members = fake.config["members"]
    rid, runner, terminated_at = _record_then_pause(fake, start_bot)
    bot, back, missing = _restart(fake, start_bot, rid)
    _wait_talk(fake, runner, list(SPEAKERS), back + TALK_AFTER)
    folder = _stop_same_recording(fake, bot, rid)
    stopped = time.monotonic()
    fake.run(runner.stop())
    figures = _check_resumed(folder, runner, members, cut=terminated_at, kept_until=terminated_at - 0.2,
                             back=back, stopped=stopped, missing=missing)
    print("SIGTERM:", "; ".join(figures))


def test_a_recording_paused_by_sigterm_is_finished_when_nobody_is_left_at_the_restart(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    members = fake.config["members"]
    channels = [fake.config["voice_channel_id"], fake.config["text_channel_id"]]
    rid, runner, terminated_at = _record_then_pause(fake, start_bot)
    fake.run(runner.stop())  # everybody leaves while the bot is away
    fake.kick_from_voice(fake.config["bot_user_id"])
    bot = start_bot()
    notice = wait_posted(fake, channels, "Recording stopped: the bot restarted and could not continue it",
                         REPLY_TIMEOUT)
    assert f"Recording `{rid}`" in notice.content and "/r/" in notice.content, notice.content
    assert not any("resumed" in m.content for c in channels for m in fake.messages(c))
    folder = bot.recordings_dir / rid
    meta = manifest(folder)
    assert meta["status"] == "finished"
    by_user = {int(s["user_id"]): s for s in meta["speakers"]}
    assert set(by_user) == {members[n] for n in SPEAKERS}
    origin = origin_guess(runner, meta["started_at"])
    lengths = set()
    for name in SPEAKERS:
        speaker = by_user[members[name]]
        wav = read_wav(folder / speaker["file"])
        # Counted from the files at the restart, by the rule the engine counts with while recording.
        assert abs(speaker["talk_seconds"] - _talk(wav)) <= 0.03 and speaker["talk_seconds"] > 1.0, speaker
        lengths.add(len(wav))
        _, problems = match_track(wav, wire_packets(runner, name, terminated_at - 0.2),
                                  sent_frames(runner.truth(name)), origin)
        assert not problems, f"{name}: " + "; ".join(problems[:5])
    assert len(lengths) == 1, lengths


def test_an_opted_out_member_stays_out_of_the_resumed_recording(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    members = fake.config["members"]
    talkers = Scenario(speakers=tuple(SpeakerSpec(name, pitch, talks=(Talk(0.3, 300.0),))
                                      for name, pitch in (("alice", 210.0), ("carol", 160.0))), duration=300.0)
    bot = start_bot()
    assert "opted out" in bot.ask("record", "optout", user="carol").content
    rid, runner = _record_until_talked(fake, bot, talkers)
    killed_at = time.monotonic()
    bot.kill()
    bot, back, _ = _restart(fake, start_bot, rid)
    _wait_talk(fake, runner, ["alice", "carol"], back + TALK_AFTER)
    folder = _stop_same_recording(fake, bot, rid)
    fake.run(runner.stop())
    meta = manifest(folder)
    assert {int(s["user_id"]) for s in meta["speakers"]} == {members["alice"]}, meta["speakers"]
    assert not any(str(members["carol"]) in p.name for p in folder.iterdir()), list(folder.iterdir())
    alice = read_wav(folder / meta["speakers"][0]["file"])
    runs = _runs_after_restart(alice, runner, "alice", origin_guess(runner, meta["started_at"]), killed_at, back,
                               time.monotonic() - 1.0)
    assert runs


def test_sigint_finishes_the_recording_for_good(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    """Ctrl-C is an operator stopping the bot for good: nothing is paused for a next start
    that may never come; the recording is finished with its summary and link at once."""
    channels = [fake.config["voice_channel_id"], fake.config["text_channel_id"]]
    bot = start_bot()
    rid, runner = _record_until_talked(fake, bot, NONSTOP)
    stopped_at = time.monotonic()
    assert bot.terminate(signal.SIGINT) == 0
    notice = wait_posted(fake, channels, "Recording stopped: the bot is shutting down", REPLY_TIMEOUT)
    assert f"Recording `{rid}`" in notice.content and "/r/" in notice.content, notice.content
    folder = bot.recordings_dir / rid
    meta = manifest(folder)
    assert meta["status"] == "finished"
    origin = origin_guess(runner, meta["started_at"])
    for speaker in meta["speakers"]:
        name = next(n for n in SPEAKERS if fake.config["members"][n] == int(speaker["user_id"]))
        _, problems = match_track(read_wav(folder / speaker["file"]), wire_packets(runner, name, stopped_at - 0.2),
                                  sent_frames(runner.truth(name)), origin)
        assert not problems, f"{name}: " + "; ".join(problems[:5])
    bot = start_bot()  # the speakers still talk: a paused recording would resume now
    assert refusal(bot.ask("record", "status")) == "Nothing is being recorded in this server."
    fake.run(runner.stop())
    assert not any("paused" in m.content or "resumed" in m.content for c in channels for m in fake.messages(c))
