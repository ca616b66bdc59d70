"""The shared voice socket reader failing for real: the recording stops with a reason.

A process out of descriptors makes ``poll()`` refuse (EINVAL once its soft
RLIMIT_NOFILE is below the descriptors polled); the test does that to the real
bot with prlimit(2) while it records. The reader used to treat its errors as
harmless and spin: the recording went on, silent, and nobody was told.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import manifest, recording_id, wait_posted
from .conftest import REPLY_TIMEOUT, BotProcess

_FAILED_LINE = "the voice socket reader failed"
TALK = Scenario(speakers=(SpeakerSpec("alice", 200.0, talks=(Talk(0.1, 8.0),)),), duration=8.2)


def test_a_reader_failure_stops_the_recording_with_a_reason(fake: FakeDiscord,
                                                            start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    text = fake.config["text_channel_id"]
    started = bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]})
    assert "Recording" in started.content, started.content
    rid = recording_id(started)
    runner = fake.start_scenario(TALK)
    folder = bot.recordings_dir / rid
    deadline = time.monotonic() + REPLY_TIMEOUT
    while not list(folder.glob("*.wav")):  # alice is heard: her track is open before descriptors run out
        assert time.monotonic() < deadline, "alice was never heard"
        time.sleep(0.05)
    pid = bot.proc.pid
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (1, limits[1]))  # poll() of 2+ descriptors now fails
    try:  # her datagrams keep waking the reader into its next poll()
        deadline = time.monotonic() + REPLY_TIMEOUT
        while _FAILED_LINE not in bot.log():
            assert time.monotonic() < deadline, "the reader failure was not logged"
            time.sleep(0.05)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    notice = wait_posted(fake, [text], "Recording stopped:", REPLY_TIMEOUT)
    assert "could no longer read the voice connection" in notice.content, notice.content
    fake.run(runner.stop())
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"
    log = bot.log()
    assert log.count(_FAILED_LINE) == 1, "the failure must be logged once, not per retry"
    assert "Traceback" not in log
