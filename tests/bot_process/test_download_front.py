"""``voice-recorder-bot web``: the standalone download front serves what a real recording
left (index and folder) with no Discord login, no voice and no token."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.fakediscord.server import FakeDiscord

from .checks import download_link, http_get, play, recording_id
from .conftest import BotProcess
from .front import running_front
from .ops import metric, scrape
from .test_health_metrics import TWO_TALK

#: Native libraries ``import discord`` loads (its DAVE and its transport encryption):
#: a process that maps neither never imported discord.py.
_DISCORD_LIBRARIES = ("davey", "_sodium")


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def test_front_serves_a_real_recording_without_discord(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], tmp_path: Path) -> None:
    bot = start_bot()
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    play(fake, TWO_TALK)
    link = download_link(bot.ask("record", "stop"))
    bot_maps = _mapped(bot.proc.pid)
    assert all(lib in bot_maps for lib in _DISCORD_LIBRARIES), "the control failed: the bot maps no discord library"
    assert bot.terminate() == 0
    requests_before = fake.run(lambda: fake.requests_seen)

    # Copies a front cached of a recording that has since been deleted go at its start; a
    # live recording's stay.
    cache = bot.recordings_dir / ".object-cache"
    for name in ("q7k2m9xw", rid):
        (cache / name).mkdir(parents=True, exist_ok=True)
        (cache / name / "alice.wav").write_bytes(b"a track fetched from the object store")

    # Everything the bot had but the token: where Discord is stays set, to show the front never goes there.
    with running_front(bot.env, tmp_path) as front:
        assert sorted(p.name for p in cache.iterdir()) == [rid]
        base = front.base
        page_url = base + link.split(f":{bot.env['HTTP_PORT']}", 1)[1]
        status, page = http_get(page_url)
        assert status == 200 and b"alice" in page and b"bob" in page

        folder = bot.recordings_dir / rid
        track = next(folder.glob("alice-*.wav"))
        whole = track.read_bytes()
        track_url = f"{base}/r/{rid}/files/{track.name}?key={link.split('?key=')[1]}"
        status, _headers, body = _get(track_url)
        assert status == 200 and body == whole
        status, headers, part = _get(track_url, {"Range": "bytes=1000-4999"})
        assert status == 206 and part == whole[1000:5000]
        assert headers["Content-Range"] == f"bytes 1000-4999/{len(whole)}"

        samples = scrape(base)
        assert metric(samples, "voice_recorder_downloads_total", kind="page") == 1
        assert metric(samples, "voice_recorder_downloads_total", kind="track") == 2
        assert not any(name.startswith(("voice_recorder_recordings", "voice_recorder_upload"))
                       for name, _ in samples)

        front_maps = _mapped(front.proc.pid)
        assert not [lib for lib in _DISCORD_LIBRARIES if lib in front_maps], "the front loaded discord.py"
        assert fake.run(lambda: fake.requests_seen) == requests_before, "the front talked to Discord"
