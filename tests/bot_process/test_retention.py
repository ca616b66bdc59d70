"""Retention counts from a recording's end, and no dead link is ever handed out."""

from __future__ import annotations

from collections.abc import Callable

from sinks.opus import SAMPLE_RATE
from sinks.wavfile import HEADER_SIZE
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import download_link, http_get, recording_id, refusal
from .conftest import REPLY_TIMEOUT, BotProcess

#: Ten seconds, as days.
RETENTION_SECONDS = 10.0
#: The recording outlasts the retention itself.
RECORDED_SECONDS = RETENTION_SECONDS + 2.0
NONSTOP = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 60.0),)),), duration=60.0)


def test_a_recording_longer_than_the_retention_is_served_until_retention_after_its_end(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(RETENTION_DAYS=repr(RETENTION_SECONDS / 86400))
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(NONSTOP)
    track = bot.recordings_dir / rid / f"{fake.config['members']['alice']}.wav"
    fake.wait_for(lambda: track.exists() and track.stat().st_size > HEADER_SIZE + RECORDED_SECONDS * SAMPLE_RATE * 2,
                  timeout=REPLY_TIMEOUT + RECORDED_SECONDS, what=f"{RECORDED_SECONDS} s recorded")
    fake.run(runner.stop())
    stopped = bot.ask("record", "stop")
    assert "The recording and its link are kept until " in stopped.content, stopped.content
    link = download_link(stopped)
    assert http_get(link)[0] == 200  # started longer ago than the retention: still alive
    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert f"Recording `{rid}`" in got.content and download_link(got) == link, got.content
    assert f"`{rid}`" in refusal(bot.ask("recordings", "list"))

    # Once the retention has passed since the end, the link is dead and nothing hands it out.
    fake.wait_for(lambda: http_get(link)[0] == 404, timeout=REPLY_TIMEOUT, what="the link to expire")
    expired = refusal(bot.ask("recordings", "get", {"recording_id": rid}))
    assert expired.startswith(f"Recording `{rid}` has expired") and "http" not in expired, expired
    assert f"`{rid}`" not in refusal(bot.ask("recordings", "list"))
