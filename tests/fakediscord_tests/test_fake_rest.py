"""REST details through a plain discord.py client: channel messages with files,
the guild upload limit, nickname edits, unknown routes."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Iterator

import discord
import pytest
from discord.http import Route

from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until

from .clientthread import ClientThread, trusting_connector


@pytest.fixture
def bot(aimed: FakeDiscord) -> Iterator[tuple[ClientThread, discord.Client]]:
    def make() -> discord.Client:
        return discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1,
                              connector=trusting_connector(aimed.config["ca_file"]))
    runner = ClientThread(make, aimed.config["token"])
    try:
        yield runner, runner.start()
    finally:
        runner.close()


def _text_channel(aimed: FakeDiscord, client: discord.Client) -> discord.TextChannel:
    channel = client.get_channel(aimed.config["text_channel_id"])
    assert isinstance(channel, discord.TextChannel)
    return channel


def test_channel_message_with_files(aimed: FakeDiscord, bot) -> None:
    runner, client = bot
    files = [discord.File(__file__, "source.py"), discord.File(__file__, "copy.py")]
    sent = runner.call(_text_channel(aimed, client).send("two files", files=files))
    with open(__file__, "rb") as f:
        expected = f.read()
    stored = aimed.messages()[-1]
    assert stored.id == sent.id and stored.content == "two files"
    assert [a.filename for a in stored.attachments] == ["source.py", "copy.py"]
    assert [a.filename for a in sent.attachments] == ["source.py", "copy.py"]
    assert runner.call(sent.attachments[1].read()) == expected  # via the URL the fake handed out


def test_upload_over_limit_surfaces_as_http_exception(aimed: FakeDiscord, bot) -> None:
    runner, client = bot
    aimed.set_upload_limit(100)
    with pytest.raises(discord.HTTPException) as caught:
        runner.call(_text_channel(aimed, client).send(file=discord.File(__file__, "big.py")))
    assert (caught.value.status, caught.value.code) == (413, 40005)
    assert aimed.messages() == []


def test_nick_edit_comes_back_as_member_update(aimed: FakeDiscord, bot) -> None:
    runner, client = bot
    guild = client.get_guild(aimed.config["guild_id"])
    runner.call(guild.me.edit(nick="Recording"))
    assert aimed.run(lambda: aimed.default.guild.members[aimed.default.bot.id].nick) == "Recording"
    wait_until(lambda: guild.me.nick == "Recording", what="GUILD_MEMBER_UPDATE")


def test_unknown_route_is_404_and_logged(aimed: FakeDiscord, bot, caplog: pytest.LogCaptureFixture) -> None:
    runner, client = bot
    caplog.set_level(logging.WARNING, logger="tests.fakediscord.rest")
    with pytest.raises(discord.NotFound):
        runner.call(client.http.request(Route("GET", "/no/such/route")))
    assert any("/api/v10/no/such/route" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)


def test_replies_are_exact_json_and_need_the_bot_token(aimed: FakeDiscord) -> None:
    url = aimed.config["api_base"] + "/users/@me"
    request = urllib.request.Request(url, headers={"Authorization": "Bot " + aimed.config["token"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        assert int(json.load(response)["id"]) == aimed.config["bot_user_id"]
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bot wrong"}), timeout=10)
    assert caught.value.code == 401
    assert aimed.config["token"] not in caught.value.read().decode()
