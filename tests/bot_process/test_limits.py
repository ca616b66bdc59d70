"""The maximum recording length, and a bot running two gateway shards."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_TEXT, CHANNEL_VOICE, Guild

from .checks import check_tracks, manifest, origin_guess, read_wav, recording_id, talk_samples, wait_posted, zip_members
from .conftest import REPLY_TIMEOUT, BotProcess

#: 0.0015 h: the recording must stop by itself after 5.4 s.
MAX_HOURS = "0.0015"
MAX_SECONDS = 5.4

#: alice talks on and on, longer than the recording may last.
MONOLOGUE = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 30.0),)),), duration=30.0)

#: Two speakers taking turns, played in each of the two guilds.
DIALOGUE = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.5, 1.4),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(1.6, 2.5),)),
    ),
    duration=2.8,
)


def test_recording_stops_by_itself_at_the_maximum_length(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(MAX_RECORDING_HOURS=MAX_HOURS)
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(MONOLOGUE)
    try:
        notice = wait_posted(fake, [fake.config["text_channel_id"]], "Recording stopped:", REPLY_TIMEOUT + MAX_SECONDS)
    finally:
        fake.run(runner.stop())

    assert "the maximum recording length (5.4 s) was reached" in notice.content, notice.content
    meta = manifest(bot.recordings_dir / rid)
    assert meta["status"] == "finished"
    lasted = datetime.fromisoformat(meta["ended_at"]) - datetime.fromisoformat(meta["started_at"])
    assert lasted.total_seconds() >= MAX_SECONDS, meta
    alice = f"alice-{fake.config['members']['alice']}.wav"
    assert set(zip_members(notice)) == {alice}
    # What was recorded up to the stop is the speaker's audio, aligned.
    track = read_wav(bot.recordings_dir / rid / alice)
    stopped = time.monotonic() - (time.time() - notice.created)
    check_tracks({"alice": track}, runner, origin_guess(runner, meta["started_at"]), before=stopped - 1.0)
    assert bot.ask("record", "status").content == "Nothing is being recorded in this server."


def _guild_on_other_shard(fake: FakeDiscord, shard_count: int) -> tuple[Guild, int, int]:
    """A new guild with text and voice channels that Discord routes to another shard than
    the default guild's; the bot and the default owner are members."""
    def build() -> tuple[Guild, int, int]:
        world = fake.world
        default_shard = (fake.config["guild_id"] >> 22) % shard_count
        owner = world.users[fake.config["members"]["owner"]]
        while True:
            guild = world.add_guild("Second Shard Guild", owner)
            if (guild.id >> 22) % shard_count != default_shard:
                break
            del world.guilds[guild.id]
            time.sleep(0.002)  # the shard comes from the id's millisecond timestamp
        text = world.add_channel(guild, "second-general", CHANNEL_TEXT)
        voice = world.add_channel(guild, "Second Voice", CHANNEL_VOICE)
        world.add_member(guild, world.users[fake.config["bot_user_id"]])
        return guild, text.id, voice.id
    return fake.run(build)


def test_a_bot_on_two_shards_records_in_a_guild_on_each(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    guild, text_id, voice_id = _guild_on_other_shard(fake, 2)
    bot = start_bot(SHARD_COUNT="2")
    fake.wait_for(lambda: fake.gateway_connected(guild.id), timeout=REPLY_TIMEOUT, what="the second shard")
    owner = fake.config["members"]["owner"]

    first = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    second_start = bot.fake.invoke_command("record", "start", {"channel": voice_id}, user_id=owner,
                                           guild_id=guild.id, channel_id=text_id).wait_message(timeout=REPLY_TIMEOUT)
    second = recording_id(second_start)
    assert first != second

    # Both guilds talk at the same time, each with speakers of its own.
    runners = [fake.start_scenario(DIALOGUE),
               fake.run(_start_in(fake, guild.id, voice_id))]
    for runner in runners:
        fake.run(runner.wait_done(), timeout=DIALOGUE.duration + 30)
        fake.run(runner.stop())

    replies = [bot.ask("record", "stop"),
               bot.fake.invoke_command("record", "stop", user_id=owner, guild_id=guild.id,
                                       channel_id=text_id).wait_message(timeout=REPLY_TIMEOUT)]
    for rid, runner, reply in zip((first, second), runners, replies):
        folder = bot.recordings_dir / rid
        meta = manifest(folder)
        assert meta["status"] == "finished" and meta["guild"]["id"] == str(runner.guild_id), meta
        files = zip_members(reply)
        ids = {name: speaker.user_id for name, speaker in runner.speakers.items()}
        assert set(files) == {f"{name}-{uid}.wav" for name, uid in ids.items()}
        tracks = {name: read_wav(files[f"{name}-{uid}.wav"]) for name, uid in ids.items()}
        matched = check_tracks(tracks, runner, origin_guess(runner, meta["started_at"]))
        for name, samples in matched.items():
            assert samples >= 0.9 * talk_samples(runner, name), f"{rid} {name}: only {samples} samples matched"


async def _start_in(fake: FakeDiscord, guild_id: int, channel_id: int) -> ScenarioRunner:
    runner = ScenarioRunner(fake.world, fake.voice, guild_id, channel_id, DIALOGUE)
    await runner.start()
    return runner

