"""Guilds placed on chosen gateway shards of the loopback Discord, and what a test does in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.bot_process.conftest import REPLY_TIMEOUT
from tests.fakediscord.messages import InteractionRecord, Message
from tests.fakediscord.scenario import Scenario, ScenarioRunner
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_TEXT, CHANNEL_VOICE, snowflake

__all__ = ["Place", "ask", "guild_on_shard", "invoke", "member", "play", "shard_of"]


@dataclass(frozen=True)
class Place:
    """A guild the bot is in, with a text and a voice channel; owned by the default owner."""

    guild_id: int
    text_id: int
    voice_id: int
    owner_id: int

    @property
    def channels(self) -> list[int]:
        """Where the bot posts about this guild's recordings."""
        return [self.text_id, self.voice_id]


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's routing rule: the shard whose gateway session receives `guild_id`."""
    return (guild_id >> 22) % shard_count


def guild_on_shard(fake: FakeDiscord, name: str, shard: int, shard_count: int, *members: str) -> Place:
    """A new guild whose id falls on `shard` of `shard_count`, with the bot, the default
    owner and new users named `members` in it (add it before the bot connects)."""
    def build() -> Place:
        world = fake.world
        made = snowflake()
        # Move the id's timestamp forward by less than `shard_count` ms to land on the shard.
        ms = made >> 22
        guild_id = ((ms + (shard - ms) % shard_count) << 22) | (made & 0x3FFFFF)
        guild = world.add_guild(name, world.users[fake.config["members"]["owner"]], guild_id=guild_id)
        text = world.add_channel(guild, "general", CHANNEL_TEXT)
        voice = world.add_channel(guild, "Voice", CHANNEL_VOICE)
        world.add_member(guild, world.users[fake.config["bot_user_id"]])
        for username in members:
            world.add_member(guild, world.add_user(username))
        return Place(guild.id, text.id, voice.id, guild.owner_id)
    place = fake.run(build)
    assert shard_of(place.guild_id, shard_count) == shard
    return place


def member(fake: FakeDiscord, place: Place, username: str) -> int:
    """The user id of the member of `place` called `username`."""
    return fake.run(lambda: next(uid for uid, m in fake.world.guilds[place.guild_id].members.items()
                                 if m.user.username == username))


def invoke(fake: FakeDiscord, place: Place, name: str, subcommand: str, options: dict[str, Any] | None = None,
           user_id: int | None = None) -> InteractionRecord:
    """``/name subcommand`` in `place`'s text channel, by its owner unless `user_id` says who."""
    return fake.invoke_command(name, subcommand, options, user_id=user_id or place.owner_id,
                               channel_id=place.text_id, guild_id=place.guild_id)


def ask(fake: FakeDiscord, place: Place, name: str, subcommand: str, options: dict[str, Any] | None = None,
        user_id: int | None = None) -> Message:
    """:func:`invoke`, and its first visible answer."""
    return invoke(fake, place, name, subcommand, options, user_id).wait_message(timeout=REPLY_TIMEOUT)


def play(fake: FakeDiscord, place: Place, scenario: Scenario) -> ScenarioRunner:
    """Start `scenario` in `place`'s voice channel; returns its runner (stop it with
    ``fake.run(runner.stop())``)."""
    runner = ScenarioRunner(fake.world, fake.voice, place.guild_id, place.voice_id, scenario)
    fake.run(runner.start())
    return runner
