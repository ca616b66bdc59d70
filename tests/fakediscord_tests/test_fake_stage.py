"""Stage channels in the loopback Discord: type 13 as discord.py reads it, joiners land in
the audience (suppressed) until made speakers, no DAVE on stages, and only speakers' voice
is forwarded."""

from __future__ import annotations

import asyncio

import discord

from tests.fakediscord.rtp import MODE_XCHACHA
from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_STAGE, World
from tests.fakediscord.voice import VoiceServer
from tests.polling import wait_until

from .clientthread import ClientThread, trusting_connector
from .test_voice_server import RawClient, ca  # noqa: F401  (the module's CA fixture)


def _stage_world() -> tuple[World, int, int, int]:
    world = World()
    bot = world.add_user("recorder", bot=True)
    guild = world.add_guild("g", bot)
    stage = world.add_channel(guild, "stage", CHANNEL_STAGE)
    return world, bot.id, guild.id, stage.id


def test_a_stage_forwards_its_speakers_not_its_audience_and_needs_no_dave(ca) -> None:  # noqa: F811
    async def main() -> None:
        world, bot_id, guild_id, stage_id = _stage_world()
        server = VoiceServer(world, ca.server_context(), dave=True)  # DAVE on, yet not on stages
        await server.start()
        client = RawClient(server, ca, guild_id, bot_id)
        client.channel_id = stage_id
        scenario = Scenario(speakers=(SpeakerSpec("alice", 200.0, talks=(Talk(0.0, 0.5),)),
                                      SpeakerSpec("carol", 160.0, talks=(Talk(0.0, 0.5),), audience=True)),
                            duration=0.8)
        runner = ScenarioRunner(world, server, guild_id, stage_id, scenario)
        try:
            desc = await client.connect(MODE_XCHACHA, max_dave=0)  # asserts dave_protocol_version 0
            assert desc["mode"] == MODE_XCHACHA
            await runner.start()
            await runner.wait_done()
            alice, carol = runner.speakers["alice"], runner.speakers["carol"]
            assert not world.voice_states[(guild_id, alice.user_id)].suppress
            assert world.voice_states[(guild_id, carol.user_id)].suppress
            await asyncio.sleep(0.2)
            got: dict[int, list[bytes]] = {}
            while not client.datagrams.empty():
                opened = client.open(client.datagrams.get_nowait())
                if opened is not None:
                    got.setdefault(opened[0], []).append(opened[3])
            assert set(got) == {alice.ssrc}
            assert got[alice.ssrc] == [f.opus for f in alice.frames if f.fate == "sent"]
            assert carol.frames and all(f.fate == "suppressed" and f.seq is None for f in carol.frames)
        finally:
            await runner.stop()
            await client.close()
            await server.stop()

    asyncio.run(main())


def test_discordpy_sees_a_stage_and_who_is_in_its_audience(aimed: FakeDiscord) -> None:
    stage_id = aimed.run(lambda: aimed.world.add_channel(aimed.default.guild, "Stage", CHANNEL_STAGE).id)
    intents = discord.Intents.default()
    runner = ClientThread(lambda: discord.Client(intents=intents, guild_ready_timeout=0.1,
                                                 connector=trusting_connector(aimed.config["ca_file"])),
                          aimed.config["token"])
    try:
        bot = runner.start()
        guild = bot.get_guild(aimed.config["guild_id"])
        stage = guild.get_channel(stage_id)
        assert isinstance(stage, discord.StageChannel)
        alice = aimed.config["members"]["alice"]
        aimed.set_voice_state(alice, stage_id)
        member = wait_until(lambda: (m := guild.get_member(alice)) and m.voice and m.voice.channel and m,
                            what="alice on the stage")
        assert member.voice.suppress and stage.members == [member] and stage.speakers == []
        aimed.run(lambda: aimed.world.set_suppress(aimed.config["guild_id"], alice, False))
        wait_until(lambda: stage.speakers == [guild.get_member(alice)], what="alice among the speakers")
    finally:
        runner.close()
