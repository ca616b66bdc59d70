"""A stage channel recorded end to end: the bot joins it as audience, every speaker
on the stage gets their own exact track, the audience (whom Discord does not
forward) gets none, and stages run without DAVE."""

from __future__ import annotations

from collections.abc import Callable

from sinks.opus import SAMPLE_RATE
from sinks.wavfile import HEADER_SIZE
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_STAGE

from .checks import check_tracks, manifest, origin_guess, read_wav, recording_id, talk_samples, zip_members
from .conftest import REPLY_TIMEOUT, BotProcess

#: alice and bob speak on the stage; carol, in the audience, talks too but is not heard.
PANEL = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.6, 1.4),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(1.5, 2.3),)),
        SpeakerSpec("carol", 160.0, talks=(Talk(0.6, 2.3),), audience=True),
    ),
    duration=2.6,
)


def test_the_speakers_of_a_stage_are_recorded_and_its_audience_is_not(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    stage = fake.run(lambda: fake.world.add_channel(fake.default.guild, "Stage", CHANNEL_STAGE).id)
    bot = start_bot()
    started = bot.ask("record", "start", {"channel": stage})
    assert f"Recording <#{stage}>" in started.content, started.content
    rid = recording_id(started)
    bot_state = fake.world.voice_states[(fake.config["guild_id"], fake.config["bot_user_id"])]
    assert bot_state.channel_id == stage and bot_state.suppress  # in the audience, as Discord puts a bot
    assert fake.run(lambda: fake.voice.room(fake.config["guild_id"], stage).dave_version) == 0
    fake.wait_for(lambda: any("This channel is being recorded" in m.content for m in fake.messages(stage)),
                  REPLY_TIMEOUT, "the consent notice in the stage's chat")

    runner = fake.start_scenario(PANEL, channel_id=stage)
    fake.run(runner.wait_done(), timeout=PANEL.duration + 30)
    fake.run(runner.stop())
    reply = bot.ask("record", "stop")
    assert "- alice: talked" in reply.content and "- bob: talked" in reply.content, reply.content
    assert "carol" not in reply.content, reply.content

    members = fake.config["members"]
    files = zip_members(reply)
    assert set(files) == {f"{name}-{members[name]}.wav" for name in ("alice", "bob")}
    meta = manifest(bot.recordings_dir / rid)
    assert meta["channel"]["name"] == "Stage" and meta["status"] == "finished"
    tracks = {name: read_wav(files[f"{name}-{members[name]}.wav"]) for name in ("alice", "bob")}
    matched = check_tracks(tracks, runner, origin_guess(runner, meta["started_at"]))
    for name, samples in matched.items():
        assert samples >= 0.9 * talk_samples(runner, name), f"{name}: only {samples} samples matched"


#: alice speaks on the stage; carol, in the audience, talks all along but is heard only once made a speaker.
PROMOTED = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 60.0),)),
                              SpeakerSpec("carol", 160.0, talks=(Talk(0.3, 60.0),), audience=True)),
                    duration=60.0)


def test_a_stage_records_itself_and_an_audience_member_made_speaker_is_heard_from_then_on(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    stage = fake.run(lambda: fake.world.add_channel(fake.default.guild, "Stage", CHANNEL_STAGE).id)
    bot = start_bot()
    bot.ask("settings", "autorecord", {"channel": stage})
    bot.ask("settings", "autorecord-post", {"channel": fake.config["text_channel_id"]})
    bot.ask("settings", "autorecord-members", {"count": 2})  # the audience counts: they are people too

    runner = fake.start_scenario(PROMOTED, channel_id=stage)
    try:
        post = fake.wait_for(lambda: next((m for m in fake.messages() if m.content.startswith("Autorecord")), None),
                             REPLY_TIMEOUT, "the autorecording of the stage")
        rid = recording_id(post)
        folder = bot.recordings_dir / rid
        alice, carol = runner.speakers["alice"].user_id, runner.speakers["carol"].user_id
        one_second = HEADER_SIZE + SAMPLE_RATE * 2
        fake.wait_for(lambda: (folder / f"{alice}.wav").exists() and (folder / f"{alice}.wav").stat().st_size
                      > one_second, REPLY_TIMEOUT, "a second of alice")
        assert not (folder / f"{carol}.wav").exists()  # talking in the audience: not forwarded, not recorded
        fake.run(lambda: fake.world.set_suppress(fake.config["guild_id"], carol, False))
        fake.wait_for(lambda: (folder / f"{carol}.wav").exists() and (folder / f"{carol}.wav").stat().st_size
                      > one_second, REPLY_TIMEOUT, "a second of carol once on the stage")
        # Stopped while both are still there: the bot learns names from who is in voice.
        reply = bot.ask("record", "stop")
    finally:
        fake.run(runner.stop())
    assert "- alice: talked" in reply.content and "- carol: talked" in reply.content, reply.content
