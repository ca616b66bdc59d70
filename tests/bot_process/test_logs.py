"""What the bot's log never holds, at any level: the token, or a download key; and
LOG_FORMAT=json's one object per line."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.fakediscord.server import FakeDiscord

from .checks import download_link, recording_id, wait_posted
from .conftest import REPLY_TIMEOUT, BotProcess


def test_no_download_key_reaches_the_log_even_at_debug(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot("--log-level", "DEBUG")
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    # A shutdown posts the summary in the channel through discord.py's HTTP client,
    # which logs every request payload at DEBUG: the link is in one.
    assert bot.terminate() == 0
    posted = wait_posted(fake, [fake.config["text_channel_id"]], f"Recording `{rid}` of", REPLY_TIMEOUT)
    key = download_link(posted).split("?key=")[1]
    log = bot.log()
    assert f"Recording `{rid}` of" in log and "?key=[redacted]" in log  # the payload was logged, redacted
    assert key not in log
    assert fake.config["token"] not in log


def test_json_logs_are_one_object_per_line_and_redacted(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot("--log-level", "DEBUG", LOG_FORMAT="json")
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    assert bot.terminate() == 0  # the shutdown's summary goes through discord.py's logged HTTP client
    posted = wait_posted(fake, [fake.config["text_channel_id"]], f"Recording `{rid}` of", REPLY_TIMEOUT)
    key = download_link(posted).split("?key=")[1]
    lines = bot.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line, or this raises
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry["message"].startswith("connected as ") for entry in entries)
    # discord.py logs the summary's payload at DEBUG: the link in it, redacted.
    assert any("?key=[redacted]" in entry["message"] for entry in entries)
    assert key not in bot.log()
    assert fake.config["token"] not in bot.log()
