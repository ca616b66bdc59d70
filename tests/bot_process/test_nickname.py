"""The REC mark in the bot's nickname: on while recording, off after, and never left
behind or doubled by a crash."""

from __future__ import annotations

from collections.abc import Callable

from bot.nickname import RECORDING_MARK
from tests.fakediscord.server import FakeDiscord

from .checks import recording_id
from .conftest import REPLY_TIMEOUT, BotProcess


def _nick(fake: FakeDiscord) -> str | None:
    guild = fake.world.guilds[fake.config["guild_id"]]
    return guild.members[fake.config["bot_user_id"]].nick


def _wait_nick(fake: FakeDiscord, wanted: str | None) -> None:
    fake.wait_for(lambda: _nick(fake) == wanted or None, REPLY_TIMEOUT, f"the bot's nickname to be {wanted!r}")


def test_a_crash_leaves_no_rec_mark_and_the_next_recording_shows_one(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    name = fake.world.users[fake.config["bot_user_id"]].username
    marked = f"{RECORDING_MARK} {name}"
    bot = start_bot()
    assert _nick(fake) is None
    recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    _wait_nick(fake, marked)
    bot.kill()

    again = start_bot()
    _wait_nick(fake, None)  # the restart takes off the mark the dead process left
    rid = recording_id(again.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    _wait_nick(fake, marked)  # one mark, not two
    assert f"Recording `{rid}`" in again.ask("record", "stop").content
    _wait_nick(fake, None)
