"""The benchmarks' load world puts its guilds on the gateway shards in turn, as an
unmodified discord.py client running two shards receives them from the loopback Discord."""

from __future__ import annotations

import discord

from tests.fakediscord.loadgen import build_load_world
from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until

from .clientthread import ClientThread, trusting_connector


class _TwoShards(discord.AutoShardedClient):
    def __init__(self, fake: FakeDiscord) -> None:
        super().__init__(intents=discord.Intents.default(), shard_count=2, guild_ready_timeout=0.1,
                         connector=trusting_connector(fake.config["ca_file"]))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause between the shards' IDENTIFYs: nothing here is about Discord's rate limit."""


def test_load_world_guilds_take_turns_over_two_shards(aimed: FakeDiscord) -> None:
    rooms = aimed.run(lambda: build_load_world(aimed.world, aimed.default.bot, rooms=6, speakers=12, shards=2))
    runner = ClientThread(lambda: _TwoShards(aimed), aimed.config["token"])
    try:
        bot = runner.start()
        wait_until(lambda: all(bot.get_guild(r.guild_id) for r in rooms), what="the load guilds")
        assert [bot.get_guild(r.guild_id).shard_id for r in rooms] == [0, 1, 0, 1, 0, 1]
        assert [len(r.speaker_ids) for r in rooms] == [2] * 6
    finally:
        runner.close()
