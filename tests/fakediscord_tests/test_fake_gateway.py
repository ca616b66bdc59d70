"""discord.py 2.7 (unmodified) logs in, gets READY and the guild, resumes, and
sees voice states, all against the loopback Discord."""

from __future__ import annotations

import asyncio

import discord
import pytest

from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until

from .clientthread import ClientThread, trusting_connector


def _client_factory(fake: FakeDiscord, cls: type[discord.Client] = discord.Client,
                    intents: discord.Intents | None = None):
    def make() -> discord.Client:
        # guild_ready_timeout: READY waits this long after the last GUILD_CREATE.
        return cls(intents=intents or discord.Intents.default(), guild_ready_timeout=0.1,
                   connector=trusting_connector(fake.config["ca_file"]))
    return make


class _QuickShards(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause between shard IDENTIFYs: shards 0 and 1 are in different buckets of the fake."""


@pytest.fixture
def client(aimed: FakeDiscord):
    """A discord.Client with default intents (no members intent), READY."""
    runner = ClientThread(_client_factory(aimed), aimed.config["token"])
    try:
        yield runner, runner.start()
    finally:
        runner.close()


def test_ready_brings_guild_with_channels_members_roles(aimed: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.members = True
    runner = ClientThread(_client_factory(aimed, intents=intents), aimed.config["token"])
    try:
        _check_ready_state(aimed, runner.start())
    finally:
        runner.close()


def _check_ready_state(aimed: FakeDiscord, bot: discord.Client) -> None:
    cfg = aimed.config
    assert bot.user is not None and bot.user.id == cfg["bot_user_id"] and bot.user.bot
    assert bot.application_id == cfg["application_id"]
    guild = bot.get_guild(cfg["guild_id"])
    assert guild is not None and guild.name == "Loopback Guild"
    assert isinstance(guild.get_channel(cfg["text_channel_id"]), discord.TextChannel)
    assert isinstance(guild.get_channel(cfg["voice_channel_id"]), discord.VoiceChannel)
    assert {m.id for m in guild.members} == set(cfg["members"].values()) | {cfg["bot_user_id"]}
    assert guild.chunked  # member_count matched: no chunk requests needed
    assert guild.get_role(cfg["recorder_role_id"]).name == "Recorder"
    assert guild.get_member(cfg["members"]["recorder"]).get_role(cfg["recorder_role_id"]) is not None
    assert guild.owner_id == cfg["members"]["owner"]
    assert guild.get_member(cfg["members"]["admin"]).guild_permissions.administrator
    assert not guild.get_member(cfg["members"]["nobody"]).guild_permissions.administrator


def test_wrong_token_is_login_failure(aimed: FakeDiscord) -> None:
    async def login() -> None:
        client = discord.Client(intents=discord.Intents.default(),
                                connector=trusting_connector(aimed.config["ca_file"]))
        try:
            await client.login("not-the-token")
        finally:
            await client.close()
    with pytest.raises(discord.LoginFailure):
        asyncio.run(login())


def test_voice_state_of_other_user_arrives_with_member(aimed: FakeDiscord, client) -> None:
    _, bot = client
    cfg = aimed.config
    alice = cfg["members"]["alice"]
    aimed.set_voice_state(alice, cfg["voice_channel_id"])
    guild = bot.get_guild(cfg["guild_id"])
    member = wait_until(lambda: (m := guild.get_member(alice)) and m.voice and m.voice.channel and m,
                        what="alice in voice")
    assert member.voice.channel.id == cfg["voice_channel_id"]
    assert guild.get_channel(cfg["voice_channel_id"]).members == [member]
    assert aimed.kick_from_voice(alice) == 1
    # Without the members intent discord.py forgets a member who leaves voice.
    wait_until(lambda: not guild.get_channel(cfg["voice_channel_id"]).members, what="alice out of voice")


def test_resume_after_forced_close_replays_missed_events(aimed: FakeDiscord, client) -> None:
    runner, bot = client
    resumed = runner.submit(bot.wait_for("resumed", timeout=15))
    cfg = aimed.config
    bob = cfg["members"]["bob"]

    def close_and_change() -> int:
        # Same loop turn: the event is queued behind the close, so the client
        # only gets it through RESUME's replay.
        closed = aimed.gateway.force_close()
        aimed.world.set_voice_state(cfg["guild_id"], bob, cfg["voice_channel_id"])
        return closed
    assert aimed.run(close_and_change) == 1
    resumed.result(timeout=20)
    guild = bot.get_guild(cfg["guild_id"])
    wait_until(lambda: (m := guild.get_member(bob)).voice and m.voice.channel, what="bob's replayed voice state")
    assert len(aimed.gateway.sessions) == 1  # resumed, not re-identified


def test_autosharded_client_gets_guild_on_its_shard(aimed: FakeDiscord) -> None:
    aimed.rest.recommended_shards = 2
    runner = ClientThread(_client_factory(aimed, _QuickShards), aimed.config["token"])
    try:
        bot = runner.start()
        guild_id = aimed.config["guild_id"]
        wait_until(lambda: bot.get_guild(guild_id), what="the guild")
        assert bot.shard_count == 2
        sessions = list(aimed.gateway.sessions.values())
        assert sorted(s.shard_id for s in sessions) == [0, 1]
        assert bot.get_guild(guild_id).shard_id == (guild_id >> 22) % 2
    finally:
        runner.close()


def test_op4_moves_the_bot_in_and_out_of_voice(aimed: FakeDiscord, client) -> None:
    runner, bot = client
    cfg = aimed.config
    guild = bot.get_guild(cfg["guild_id"])
    channel = guild.get_channel(cfg["voice_channel_id"])
    runner.call(guild.change_voice_state(channel=channel, self_deaf=True))
    key = (cfg["guild_id"], cfg["bot_user_id"])
    state = aimed.wait_for(lambda: aimed.world.voice_states.get(key), what="the bot's voice state")
    assert state.channel_id == cfg["voice_channel_id"] and state.self_deaf
    wait_until(lambda: guild.me.voice and guild.me.voice.channel == channel, what="own VOICE_STATE_UPDATE")
    runner.call(guild.change_voice_state(channel=None))
    aimed.wait_for(lambda: key not in aimed.world.voice_states, what="the bot out of voice")
    wait_until(lambda: guild.me.voice is None, what="own VOICE_STATE_UPDATE (left)")


def _raw_identify(aimed: FakeDiscord, identify: dict) -> tuple[int | None, list[dict]]:
    """Connect a bare websocket, IDENTIFY, and return (close code, frames received)."""
    import aiohttp

    async def go() -> tuple[int | None, list[dict]]:
        frames = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(aimed.config["gateway_url"] + "?v=10&encoding=json") as ws:
                frames.append(await ws.receive_json(timeout=10))
                await ws.send_json({"op": 2, "d": identify})
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        frames.append(msg.json())
                        if frames[-1].get("t") == "GUILD_CREATE":
                            await ws.close()
                return ws.close_code, frames
    return asyncio.run(go())


def test_identify_rejects_bad_token_and_disallowed_intents(aimed: FakeDiscord) -> None:
    token = aimed.config["token"]
    code, frames = _raw_identify(aimed, {"token": "wrong", "intents": 0, "properties": {}})
    assert code == 4004 and frames[0]["op"] == 10 and len(frames) == 1
    aimed.gateway.allowed_intents = 0
    code, _ = _raw_identify(aimed, {"token": token, "intents": 1 << 1, "properties": {}})
    assert code == 4014
    code, frames = _raw_identify(aimed, {"token": token, "intents": 1, "properties": {}})
    assert [f.get("t") for f in frames[1:]] == ["READY", "GUILD_CREATE"]
    guild = frames[2]["d"]
    assert guild["member_count"] == len(guild["members"]) == len(aimed.config["members"]) + 1
    assert frames[1]["d"]["resume_gateway_url"] == aimed.config["gateway_url"]
