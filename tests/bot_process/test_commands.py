"""Who may use which command, opt-out and opt-in, and /recordings list|get|delete, per guild."""

from __future__ import annotations

from collections.abc import Callable

from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_VOICE, PERM_CONNECT

from .checks import manifest, origin_guess, play, read_wav, recording_id, refusal, zip_members
from .conftest import REPLY_TIMEOUT, BotProcess, OtherGuild

ALL_TALK = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.5, 1.0),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(1.0, 1.5),)),
        SpeakerSpec("carol", 160.0, talks=(Talk(1.5, 2.0),)),
    ),
    duration=2.3,
)
CAROL_TALKS = Scenario(speakers=(SpeakerSpec("carol", 160.0, talks=(Talk(0.5, 1.0),)),), duration=1.3)


def _start(bot: BotProcess, user: str = "owner") -> str:
    started = bot.ask("record", "start", {"channel": bot.fake.config["voice_channel_id"]}, user=user)
    assert "Recording" in started.content and not started.ephemeral, started.content
    return recording_id(started)


def test_members_without_rights_are_refused_and_the_recorder_role_may_record(
        start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    rules = "Only members with Manage Server or the **Recorder** role may do that."
    refused = []
    for name, sub, options in (("record", "start", {"channel": bot.fake.config["voice_channel_id"]}),
                               ("record", "stop", None), ("recordings", "list", None),
                               ("recordings", "get", {"recording_id": "whatever"}),
                               ("recordings", "delete", {"recording_id": "whatever"})):
        refused.append(bot.command(name, sub, options, user="nobody"))
        assert refusal(refused[-1].wait_message(timeout=REPLY_TIMEOUT)) == rules, f"/{name} {sub}"

    rid = _start(bot, user="recorder")
    stopped = bot.ask("record", "stop", user="nobody")
    assert refusal(stopped) == rules
    assert manifest(bot.recordings_dir / rid)["status"] == "recording"
    reply = bot.ask("record", "stop", user="recorder")
    assert f"Recording `{rid}`" in reply.content and "Nobody spoke." in reply.content, reply.content
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"
    # Once the bot has exited nothing more can arrive: a refusal is the only answer, not an error too.
    assert bot.terminate() == 0
    for record in refused:
        assert [r.message.content for r in record.replies if r.message] == [rules], record


def test_opted_out_member_is_not_recorded_until_opt_in(fake: FakeDiscord,
                                                       start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    carol = fake.config["members"]["carol"]
    assert "opted out" in refusal(bot.ask("record", "optout", user="carol"))
    rid = _start(bot)
    runner = play(fake, ALL_TALK)
    reply = bot.ask("record", "stop")
    members = fake.config["members"]
    files = zip_members(reply)
    assert set(files) == {f"alice-{members['alice']}.wav", f"bob-{members['bob']}.wav"}
    # Not a sample of carol in the others' tracks: where she talked (after bob's last frame) they are silent.
    origin = origin_guess(runner, manifest(bot.recordings_dir / rid)["started_at"])
    quiet_from = max(f.mono_time for f in runner.truth("bob") if f.seq is not None) + 0.1
    spoken = [round((f.scheduled - origin) * SAMPLE_RATE) for f in runner.truth("carol")
              if f.seq is not None and not f.silence and f.mono_time > quiet_from]
    assert spoken, "carol did not talk after the others"
    for name, data in files.items():
        wav = read_wav(data)
        span = wav[spoken[0] - FRAME_SAMPLES:spoken[-1] + 2 * FRAME_SAMPLES]
        assert len(span) and not span.any(), f"{name} holds sound while carol talked"
    assert "carol" not in reply.content
    folder = bot.recordings_dir / rid
    assert not [p.name for p in folder.iterdir() if "carol" in p.name or str(carol) in p.name]
    listed = manifest(folder)["speakers"]
    assert {s["display_name"] for s in listed} == {"alice", "bob"}
    assert str(carol) not in {s["user_id"] for s in listed}

    assert "opted in" in refusal(bot.ask("record", "optin", user="carol"))
    rid = _start(bot)
    play(fake, CAROL_TALKS)
    reply = bot.ask("record", "stop")
    assert set(zip_members(reply)) == {f"carol-{carol}.wav"}
    assert (bot.recordings_dir / rid / f"carol-{carol}.wav").is_file()


def test_recordings_list_get_delete_are_scoped_to_the_guild(
        fake: FakeDiscord, other_guild: OtherGuild, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    rid = _start(bot)
    play(fake, CAROL_TALKS)
    bot.ask("record", "stop")
    folder = bot.recordings_dir / rid
    assert folder.is_dir()

    listed = refusal(bot.ask("recordings", "list"))
    assert f"`{rid}`" in listed and "(finished)" in listed, listed
    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert got.ephemeral and f"Recording `{rid}`" in got.content
    assert set(zip_members(got)) == {f"carol-{fake.config['members']['carol']}.wav"}

    elsewhere = {"guild_id": other_guild.guild_id, "channel_id": other_guild.text_channel_id}
    assert refusal(bot.ask("recordings", "list", **elsewhere)) == "This server has no recordings."
    for sub in ("get", "delete"):
        answer = refusal(bot.ask("recordings", sub, {"recording_id": rid}, **elsewhere))
        assert answer == f"This server has no recording `{rid}`.", answer
    assert folder.is_dir()

    deleted = refusal(bot.ask("recordings", "delete", {"recording_id": rid}))
    assert deleted == f"Deleted recording `{rid}` and its files."
    assert not folder.exists()
    assert refusal(bot.ask("recordings", "list")) == "This server has no recordings."
    assert refusal(bot.ask("recordings", "get", {"recording_id": rid})) == f"This server has no recording `{rid}`."


def test_a_member_may_record_only_a_channel_they_may_join(fake: FakeDiscord,
                                                          start_bot: Callable[..., BotProcess]) -> None:
    members = fake.config["members"]

    def private_channel() -> int:
        channel = fake.world.add_channel(fake.default.guild, "Staff only", CHANNEL_VOICE)
        channel.deny(members["recorder"], PERM_CONNECT)
        return channel.id

    private = fake.run(private_channel)
    bot = start_bot()
    refused = refusal(bot.ask("record", "start", {"channel": private}, user="recorder"))
    assert refused == (f"You can only record a voice channel you may view and connect to yourself, "
                       f"and <#{private}> is not one."), refused
    assert not [p for p in bot.recordings_dir.iterdir() if p.is_dir()]
    # The same member may record a channel they can join; the owner may record the private one.
    rid = _start(bot, user="recorder")
    assert f"Recording `{rid}`" in bot.ask("record", "stop", user="recorder").content
    started = bot.ask("record", "start", {"channel": private})
    assert recording_id(started) != rid and f"<#{private}>" in started.content, started.content
