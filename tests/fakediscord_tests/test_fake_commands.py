"""Slash commands end to end: a plain discord.py client registers an app_commands
tree per guild, the fake invokes it as a member, and the test reads the answers
(initial responses, deferrals, follow-ups editing @original, attachments)."""

from __future__ import annotations

import io
import os
import urllib.request
from typing import Iterator

import discord
import pytest
from discord import app_commands

from tests.fakediscord.server import FakeDiscord

from .clientthread import ClientThread, trusting_connector

PAYLOAD = os.urandom(2 * 1024 * 1024 + 123)  # above aiohttp's default 1 MiB body limit


class CommandClient(discord.Client):
    """/ping, /record start <channel> [label], /record big: a tiny stand-in bot."""

    def __init__(self, fake: FakeDiscord) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.1,
                         connector=trusting_connector(fake.config["ca_file"]))
        self.tree = app_commands.CommandTree(self)
        self.home = discord.Object(fake.config["guild_id"])
        self.seen_channel: list[app_commands.AppCommandChannel] = []

        @self.tree.command(name="ping", description="Answers pong", guild=self.home)
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"pong to {interaction.user.name}")

        record = app_commands.Group(name="record", description="Recording")

        @record.command(name="start", description="Start recording")
        async def start(interaction: discord.Interaction, channel: discord.VoiceChannel,
                        label: str = "take") -> None:
            self.seen_channel.append(channel)  # type: ignore[arg-type]
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"recording {channel.name} as {label}",
                                            file=discord.File(io.BytesIO(PAYLOAD), "take.bin"))
            await interaction.followup.send("second follow-up")

        @record.command(name="big", description="Send a file over the limit")
        async def big(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            try:
                await interaction.followup.send(file=discord.File(io.BytesIO(PAYLOAD), "big.bin"))
            except discord.HTTPException as exc:
                await interaction.followup.send(f"too big: {exc.status} {exc.code}")

        self.tree.add_command(record, guild=self.home)


@pytest.fixture
def bot(aimed: FakeDiscord) -> Iterator[tuple[ClientThread, CommandClient]]:
    runner = ClientThread(lambda: CommandClient(aimed), aimed.config["token"])
    try:
        client = runner.start()
        assert isinstance(client, CommandClient)
        runner.call(client.tree.sync(guild=client.home))
        yield runner, client
    finally:
        runner.close()


def test_sync_registers_guild_commands(aimed: FakeDiscord, bot) -> None:
    commands = {c["name"]: c for c in aimed.registered_commands(aimed.config["guild_id"])}
    assert set(commands) == {"ping", "record"}
    assert [(o["name"], o["type"]) for o in commands["record"]["options"]] == [("start", 1), ("big", 1)]
    assert aimed.registered_commands() == []  # nothing global


def test_ping_gets_immediate_reply(aimed: FakeDiscord, bot) -> None:
    record = aimed.invoke_command("ping", user_id=aimed.config["members"]["nobody"])
    reply = record.wait_response()
    assert (reply.kind, reply.type) == ("callback", 4)
    assert reply.message is not None and reply.message.content == "pong to nobody"
    assert record.original_id == reply.message.id
    assert aimed.messages()[-1].content == "pong to nobody"


def test_deferred_record_start_follow_up_edits_original_with_file(aimed: FakeDiscord, bot) -> None:
    _, client = bot
    cfg = aimed.config
    record = aimed.invoke_command("record", "start", {"channel": cfg["voice_channel_id"], "label": "demo"})
    replies = record.wait_replies(3)
    assert replies[0].deferred and replies[0].message is not None
    first, second = replies[1], replies[2]
    assert first.kind == "followup" and first.message.id == record.original_id  # edited @original
    assert first.message.content == "recording Voice as demo"
    assert second.message.id != record.original_id and second.message.content == "second follow-up"
    assert client.seen_channel[0].id == cfg["voice_channel_id"]
    attachment = first.message.attachment("take.bin")
    assert attachment.data == PAYLOAD
    with urllib.request.urlopen(aimed.url(attachment.path), timeout=10) as response:
        assert response.read() == PAYLOAD


def test_upload_over_guild_limit_is_413_40005(aimed: FakeDiscord, bot) -> None:
    aimed.set_upload_limit(1024 * 1024)
    record = aimed.invoke_command("record", "big")
    message = record.wait_message()
    assert message.content == "too big: 413 40005"
    assert not any(m.attachments for m in aimed.messages())


def test_invalid_invocations_are_refused(aimed: FakeDiscord, bot) -> None:
    with pytest.raises(LookupError):
        aimed.invoke_command("nope")
    with pytest.raises(ValueError, match="subcommand"):
        aimed.invoke_command("record")
    with pytest.raises(ValueError, match="required"):
        aimed.invoke_command("record", "start")
