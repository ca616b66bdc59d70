"""Commands that race in one guild: exactly one start wins, and exactly one stop.

Each pair of commands is sent back to back through the loopback Discord, so
the second reaches the bot while the first is still deferring or joining
the voice channel.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.fakediscord.messages import Message
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_VOICE

from .checks import manifest, recording_id, refusal, wait_posted
from .conftest import REPLY_TIMEOUT, BotProcess

ALREADY = "A recording is already running in this server. Stop it with `/record stop`."
NOTHING = "Nothing is being recorded in this server."


def _second_voice_channel(fake: FakeDiscord) -> int:
    """Another voice channel in the default guild (made before the bot starts, so it knows it)."""
    return fake.run(lambda: fake.world.add_channel(fake.default.guild, "Voice 2", CHANNEL_VOICE).id)


def _answers(bot: BotProcess, *commands: tuple[str, dict[str, int] | None]) -> list[Message]:
    """Send every ``/record <sub>`` at once, then wait for each one's answer."""
    sent = [bot.command("record", sub, options) for sub, options in commands]
    return [record.wait_message(timeout=REPLY_TIMEOUT) for record in sent]


def _recordings(bot: BotProcess) -> list[str]:
    return sorted(p.name for p in bot.recordings_dir.iterdir() if p.is_dir())


def test_two_starts_at_once_make_one_recording_that_stop_status_and_shutdown_see(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    voice2 = _second_voice_channel(fake)
    bot = start_bot()
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]
    made: list[str] = []
    for channels in ((voice, voice), (voice, voice2)):
        first, second = _answers(bot, ("start", {"channel": channels[0]}), ("start", {"channel": channels[1]}))
        won = [m for m in (first, second) if m.content.startswith("\N{LARGE RED CIRCLE} Recording")]
        lost = [m for m in (first, second) if m.content == ALREADY]
        assert len(won) == 1 and len(lost) == 1, [first.content, second.content]
        rid = recording_id(won[0])
        made.append(rid)
        assert _recordings(bot) == sorted(made)  # the loser left nothing behind
        assert f"`{rid}`" in refusal(bot.ask("record", "status"))
        if channels == (voice, voice):
            stopped = bot.ask("record", "stop")
            assert f"Recording `{rid}`" in stopped.content, stopped.content
            assert manifest(bot.recordings_dir / rid)["status"] == "finished"
    # The second round's winner is still running: shutdown finalizes and announces it.
    assert bot.terminate() == 0
    wait_posted(fake, [text], f"Recording `{rid}`", REPLY_TIMEOUT)
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"
    assert "Something went wrong" not in bot.log()


def test_a_stop_during_the_voice_connect_stops_the_recording_it_brings(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    voice = fake.config["voice_channel_id"]
    starting = bot.command("record", "start", {"channel": voice})
    # The bot asks the gateway to join before it opens the voice connection: stop then.
    bot_id = fake.config["bot_user_id"]
    fake.wait_for(lambda: bot_id in fake.world.voice_channel_members(voice), REPLY_TIMEOUT, "the bot joining")
    stopped = bot.ask("record", "stop")
    rid = recording_id(starting.wait_message(timeout=REPLY_TIMEOUT))
    assert f"Recording `{rid}`" in stopped.content and "Nobody spoke." in stopped.content, stopped.content
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"
    assert refusal(bot.ask("record", "status")) == NOTHING
    again = bot.ask("record", "start", {"channel": voice})
    assert recording_id(again) != rid, again.content
    assert "Something went wrong" not in bot.log()


def test_two_quick_stops_post_one_summary(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]
    rid = recording_id(bot.ask("record", "start", {"channel": voice}))
    first, second = _answers(bot, ("stop", None), ("stop", None))
    summaries = [m for m in (first, second) if f"Recording `{rid}` of" in m.content]
    assert len(summaries) == 1 and NOTHING in [first.content, second.content], [first.content, second.content]
    # Nothing else says it: no second summary in the channel either.
    assert [m.content for m in fake.messages(text) if f"Recording `{rid}` of" in m.content] in (
        [], [summaries[0].content])
