"""What the bot's log never holds, at any level: the token, or a download key."""

from __future__ import annotations

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
