"""Recordings that end without /record stop: an empty channel, and a crash of the bot process."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sinks.opus import SAMPLE_RATE
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import (
    check_get_serves,
    check_tracks,
    manifest,
    origin_guess,
    play,
    read_wav,
    recording_id,
    wait_posted,
    zip_members,
)
from .conftest import REPLY_TIMEOUT, BotProcess

#: alice talks, then everybody leaves.
TALK_AND_LEAVE = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.5, 1.2),), leave=1.5),
        SpeakerSpec("bob", 110.0, leave=1.5),
    ),
    duration=1.6,
)
#: alice and bob talk until well after the bot is killed.
LONG_TALK = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.5, 9.0),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(0.7, 9.0),)),
    ),
    duration=10.0,
)
#: How much audio flows before the crash.
BEFORE_CRASH = 2.5
#: What a crash may cost: the last second, plus scheduling slack on a shared machine.
CRASH_LOSS = 1.5


def test_recording_stops_by_itself_when_the_channel_stays_empty(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(EMPTY_CHANNEL_MINUTES="0.05")
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    play(fake, TALK_AND_LEAVE)
    left_at = time.time()

    notice = wait_posted(fake, [fake.config["text_channel_id"]], "Recording stopped:", REPLY_TIMEOUT)
    assert "nobody was left in the channel for 3 s" in notice.content, notice.content
    assert notice.created - left_at >= 3.0 - 0.1, "stopped before the channel had been empty for 3 s"
    assert f"Recording `{rid}`" in notice.content
    assert set(zip_members(notice)) == {f"alice-{fake.config['members']['alice']}.wav"}
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"
    answer = bot.ask("record", "stop")
    assert answer.ephemeral and answer.content == "Nothing is being recorded in this server."
    # The stopped session is gone: the guild may record again.
    again = bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]})
    assert recording_id(again) != rid, again.content
    assert "Nobody spoke." in bot.ask("record", "stop").content


def test_a_killed_bot_leaves_a_recording_the_next_start_repairs_and_reports(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(LONG_TALK)
    frames_before_crash = int(BEFORE_CRASH / 0.02)
    fake.wait_for(lambda: sum(f.seq is not None and not f.silence for f in runner.truth("bob"))
                  >= frames_before_crash, timeout=REPLY_TIMEOUT, what=f"{BEFORE_CRASH} s of talk")
    killed_at = time.monotonic()
    bot.kill()
    fake.run(runner.stop())

    again = start_bot()
    assert again.recordings_dir == bot.recordings_dir
    channels = [fake.config["voice_channel_id"], fake.config["text_channel_id"]]
    notice = wait_posted(fake, channels, f"`{rid}` was repaired", REPLY_TIMEOUT)
    assert "stopped unexpectedly" in notice.content

    folder = again.recordings_dir / rid
    meta = manifest(folder)
    assert meta["status"] == "interrupted"
    members = fake.config["members"]
    by_user = {int(s["user_id"]): s["file"] for s in meta["speakers"]}
    assert set(by_user) == {members["alice"], members["bob"]}
    tracks = {name: read_wav(folder / by_user[members[name]]) for name in ("alice", "bob")}
    origin = origin_guess(runner, meta["started_at"])
    for name, wav in tracks.items():
        kept = len(wav) / SAMPLE_RATE
        assert kept >= killed_at - origin - CRASH_LOSS, f"{name}: only {kept:.2f} s kept"
        assert np.abs(wav).max() > 1000, f"{name}: silent track"
    check_tracks(tracks, runner, origin, before=killed_at - CRASH_LOSS)

    check_get_serves(again, rid, folder, by_user.values())
