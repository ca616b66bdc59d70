"""Autorecord: a server's chosen voice channel records by itself when enough humans come,
or when a member with a trigger role joins, and it does not flap.

Members move in and out of voice through the fake's real VOICE_STATE_UPDATE
dispatches. A negative ("nothing started") is checked with ``/record status``
right after the move: the fake delivers both on the same gateway connection, in
order, and the bot registers a starting recording before its handler first waits.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.nickname import RECORDING_MARK
from sinks.opus import SAMPLE_RATE
from sinks.wavfile import HEADER_SIZE
from tests.fakediscord.messages import Message
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import manifest, recording_id, refusal
from .conftest import REPLY_TIMEOUT, BotProcess

#: Seconds an autorecord channel must stay empty before it records by itself again.
GRACE_SECONDS = 4.0
_NOTHING = "Nothing is being recorded in this server."
_REARMED = "records by itself again"
#: Alice and carol talk all along; carol has opted out.
TALKING = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 120.0),)),
                             SpeakerSpec("carol", 160.0, talks=(Talk(0.3, 120.0),))), duration=120.0)


def _autorecord_posts(fake: FakeDiscord) -> list[Message]:
    return [m for m in fake.messages() if m.content.startswith("Autorecord")]


def _wait_autorecord_post(fake: FakeDiscord, count: int) -> Message:
    posts = fake.wait_for(lambda: _autorecord_posts(fake) if len(_autorecord_posts(fake)) >= count else None,
                          REPLY_TIMEOUT, f"autorecord post number {count}")
    assert len(posts) == count, [p.content for p in posts]
    return posts[-1]


def _status(bot: BotProcess) -> str:
    return refusal(bot.ask("record", "status"))


def _move(fake: FakeDiscord, name: str, channel_id: int | None) -> None:
    fake.set_voice_state(fake.config["members"][name], channel_id)


def test_a_channel_with_enough_humans_records_itself_and_does_not_flap(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(AUTORECORD_GRACE_SECONDS=repr(GRACE_SECONDS))
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]
    bot.ask("settings", "autorecord", {"channel": voice})
    bot.ask("settings", "autorecord-post", {"channel": text})
    shown = refusal(bot.ask("settings", "autorecord-members", {"count": 2}))
    assert "Autorecord: <#" in shown and "starts when 2 members (bots do not count)" in shown, shown
    assert refusal(bot.ask("settings", "autorecord-members", {"count": -1})) == "The member count is 0 to 99."
    refusal(bot.ask("record", "optout", user="carol"))

    _move(fake, "nobody", voice)
    assert _status(bot) == _NOTHING  # one human is not enough

    runner = fake.start_scenario(TALKING)
    post = _wait_autorecord_post(fake, 1)
    rid = recording_id(post)
    assert "members joined" in post.content and "/record stop" in post.content, post.content
    notices = fake.wait_for(lambda: [m for m in fake.messages(voice) if "This channel is being recorded" in m.content],
                            REPLY_TIMEOUT, "the consent notice in the voice channel's chat")
    assert len(notices) == 1
    bot_member = fake.world.guilds[fake.config["guild_id"]].members[fake.config["bot_user_id"]]
    fake.wait_for(lambda: (bot_member.nick or "").startswith(RECORDING_MARK), REPLY_TIMEOUT, "the REC mark")
    track = bot.recordings_dir / rid / f"{runner.speakers['alice'].user_id}.wav"
    fake.wait_for(lambda: track.exists() and track.stat().st_size > HEADER_SIZE + 2 * SAMPLE_RATE * 2,
                  REPLY_TIMEOUT, "two seconds of alice recorded")

    # Leaving and rejoining neither ends the recording nor starts another.
    _move(fake, "nobody", None)
    _move(fake, "nobody", voice)
    assert _status(bot).startswith(f"Recording `{rid}`")

    stopped = bot.ask("record", "stop")
    assert f"Recording `{rid}`" in stopped.content, stopped.content
    files = {int(s["user_id"]) for s in manifest(bot.recordings_dir / rid)["speakers"]}
    assert runner.speakers["alice"].user_id in files and runner.speakers["carol"].user_id not in files, files
    # Stopped with people inside: it does not restart, even as they come and go ...
    _move(fake, "nobody", None)
    _move(fake, "nobody", voice)
    assert _status(bot) == _NOTHING
    # ... nor when the channel empties for less than the grace.
    fake.run(runner.stop())
    _move(fake, "nobody", None)
    _move(fake, "nobody", voice)
    _move(fake, "admin", voice)
    assert _status(bot) == _NOTHING
    assert _REARMED not in bot.log()

    # Once it has stayed empty for the grace, people coming start a new recording.
    _move(fake, "nobody", None)
    _move(fake, "admin", None)
    fake.wait_for(lambda: _REARMED in bot.log(), REPLY_TIMEOUT + GRACE_SECONDS, "the channel to be re-armed")
    _move(fake, "nobody", voice)
    assert _status(bot) == _NOTHING
    _move(fake, "admin", voice)
    again = recording_id(_wait_autorecord_post(fake, 2))
    assert again != rid
    assert f"Recording `{again}`" in bot.ask("record", "stop").content


def test_a_member_with_a_trigger_role_starts_the_recording_by_joining(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]
    bot.ask("settings", "autorecord", {"channel": voice})
    bot.ask("settings", "autorecord-post", {"channel": text})
    shown = refusal(bot.ask("settings", "autorecord-role", {"role": fake.config["recorder_role_id"]}))
    assert "starts when a member with **Recorder** joins" in shown, shown

    _move(fake, "nobody", voice)
    _move(fake, "admin", voice)
    assert _status(bot) == _NOTHING  # no member count set: only the role starts it
    _move(fake, "recorder", voice)
    post = _wait_autorecord_post(fake, 1)
    assert "recorder joined" in post.content, post.content
    rid = recording_id(post)
    assert _status(bot).startswith(f"Recording `{rid}`")
    # A channel taken off the list records by itself no more.
    refusal(bot.ask("settings", "autorecord", {"channel": voice, "remove": True}))
    assert f"Recording `{rid}`" in bot.ask("record", "stop").content
    _move(fake, "recorder", None)
    _move(fake, "recorder", voice)
    assert _status(bot) == _NOTHING
