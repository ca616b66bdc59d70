"""Names members chose reach Discord as literal text, and nothing the bot posts pings anyone."""

from __future__ import annotations

from collections.abc import Callable

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import recording_id, refusal
from .conftest import BotProcess

#: Markdown, a masked link and a mass mention, as a member's nickname.
HOSTILE = "**Bob** @everyone [free nitro](http://evil.example)"
ESCAPED = r"\*\*Bob\*\* @" + "\N{ZERO WIDTH SPACE}" + r"everyone \[free nitro](http://evil.example)"
BOB_TALKS = Scenario(speakers=(SpeakerSpec("bob", 110.0, talks=(Talk(0.3, 1.0),)),), duration=1.3)


def test_display_names_are_escaped_and_no_message_mentions_anyone(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    members = fake.config["members"]
    fake.run(lambda: fake.world.set_nick(fake.config["guild_id"], members["bob"], HOSTILE))
    fake.run(lambda: fake.world.set_nick(fake.config["guild_id"], members["owner"], HOSTILE))
    bot = start_bot()
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(BOB_TALKS)
    fake.run(runner.wait_done(), timeout=BOB_TALKS.duration + 30)
    status = refusal(bot.ask("record", "status"))
    fake.run(runner.stop())
    stopped = bot.ask("record", "stop").content
    for text in (status, stopped):
        assert f"- {ESCAPED}: " in text and HOSTILE not in text, text
    assert f"Recording `{rid}`" in stopped
    posted = fake.messages()
    assert posted, "the bot posted nothing in the text channel"
    for message in [*posted, *fake.messages(fake.config["voice_channel_id"])]:
        assert message.allowed_mentions is not None and message.allowed_mentions.get("parse") == [], (
            message.content, message.allowed_mentions)
        assert HOSTILE not in message.content, message.content
