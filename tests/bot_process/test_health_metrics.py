"""``/healthz`` and ``/metrics`` of the real bot process: ready only while the gateway is
connected, and figures that agree with what the recording itself says."""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable

import soundfile

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import download_link, http_get, manifest, play, recording_id
from .conftest import START_TIMEOUT, BotProcess
from .ops import metric, scrape, wait_health

TWO_TALK = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.2),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(0.8, 1.8),)),
    ),
    duration=2.2,
)
_STOP_LINE = re.compile(r"recording (\S+) stopped \(.*\); receive (\{.*\})")


def test_healthz_follows_the_gateway(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    assert wait_health(bot.http_base, 200, START_TIMEOUT) == {"status": "ready"}
    fake.gateway_down()
    assert fake.force_close_gateway(4000) == 1
    body = wait_health(bot.http_base, 503, START_TIMEOUT)
    assert body == {"status": "not ready", "reasons": ["gateway: shard 0 is disconnected"]}, body
    fake.gateway_down(False)
    # discord.py retries with a backoff of a few seconds after the refusal.
    assert wait_health(bot.http_base, 200, START_TIMEOUT) == {"status": "ready"}
    assert "Attempting a reconnect for shard ID 0" in bot.log()


def test_healthz_names_every_shard_of_the_process_that_is_down(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(SHARD_COUNT="2")
    wait_health(bot.http_base, 200, START_TIMEOUT)
    fake.gateway_down()
    assert fake.force_close_gateway(4000) == 2
    wait_health(bot.http_base, 503, START_TIMEOUT, {
        "status": "not ready", "reasons": ["gateway: shard 0 is disconnected", "gateway: shard 1 is disconnected"]})
    fake.gateway_down(False)
    wait_health(bot.http_base, 200, START_TIMEOUT)


def test_metrics_agree_with_the_recording(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    before = scrape(bot.http_base)
    assert metric(before, "voice_recorder_recordings_running") == 0
    assert metric(before, "voice_recorder_packets_received_total") == 0
    assert metric(before, "process_open_fds") > 0
    # Without STORAGE_URL nothing is uploaded, and no upload figures pretend otherwise.
    assert not any(name.startswith("voice_recorder_upload") for name, _labels in before)

    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    play(fake, TWO_TALK)
    during = scrape(bot.http_base)
    assert metric(during, "voice_recorder_recordings_running") == 1
    assert metric(during, "voice_recorder_speakers") == 2
    assert metric(during, "voice_recorder_packets_received_total") > 0
    assert metric(during, "voice_recorder_bytes_written_total") > 0

    reply = bot.ask("record", "stop")
    after = scrape(bot.http_base)
    assert metric(after, "voice_recorder_recordings_running") == 0
    assert metric(after, "voice_recorder_speakers") == 0
    assert metric(after, "voice_recorder_recordings_ended_total") == 1

    # What the stop logged of the receive layer, and what the manifest says of the tracks.
    stops = [m for m in _STOP_LINE.finditer(bot.log()) if m.group(1) == rid]
    assert len(stops) == 1, bot.log()[-3000:]
    receive = ast.literal_eval(stops[0].group(2))
    assert metric(after, "voice_recorder_datagrams_total") == receive["datagrams"] > 0
    assert metric(after, "voice_recorder_packets_received_total") == receive["accepted"] + receive.get("sink_full", 0)
    for reason in ("rtcp", "ip_discovery", "not_opus", "duplicate", "stale", "excluded", "unmapped_overflow"):
        assert metric(after, "voice_recorder_packets_dropped_total", layer="receive", reason=reason) == \
            receive.get(reason, 0), reason
    assert metric(after, "voice_recorder_decrypt_failures_total", layer="transport", reason="auth_failed") == \
        receive.get("auth_failed", 0)
    assert metric(after, "voice_recorder_packets_dropped_total", layer="engine", reason="queue_full") == 0

    folder = bot.recordings_dir / rid
    speakers = manifest(folder)["speakers"]
    assert len(speakers) == 2
    assert metric(after, "voice_recorder_packets_decoded_total") == sum(s["packets"] for s in speakers) > 0
    assert metric(after, "voice_recorder_packets_lost_total") == sum(s["losses"] for s in speakers)
    frames = sum(soundfile.info(str(folder / s["file"])).frames for s in speakers)
    assert metric(after, "voice_recorder_bytes_written_total") == 2 * frames  # 16-bit mono

    # The web side: one page view is one download of kind "page".
    status, page = http_get(download_link(reply))
    assert status == 200 and b"alice" in page
    deadline = time.monotonic() + 10
    while metric(scrape(bot.http_base), "voice_recorder_downloads_total", kind="page") != 1:
        assert time.monotonic() < deadline, "the page view was not counted"
        time.sleep(0.05)
