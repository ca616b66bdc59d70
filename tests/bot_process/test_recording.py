"""/record start and /record stop through the real bot process: ZIP, WAVs, link, manifest, log."""

from __future__ import annotations

from collections.abc import Callable

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import (
    check_tracks,
    download_link,
    http_get,
    manifest,
    origin_guess,
    play,
    read_wav,
    recording_id,
    talk_samples,
    zip_members,
)
from .conftest import BotProcess

#: alice, bob and carol take turns; they join when the bot is already recording.
TURNS = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.6, 1.3),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(1.4, 2.1), Talk(2.9, 3.3))),
        SpeakerSpec("carol", 160.0, talks=(Talk(2.2, 2.8),)),
    ),
    duration=3.6,
)


def test_three_speakers_zip_wavs_link_manifest(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    voice_channel = fake.config["voice_channel_id"]
    started = bot.ask("record", "start", {"channel": voice_channel})
    assert "Recording" in started.content, started.content
    rid = recording_id(started)
    runner = play(fake, TURNS)
    status = bot.ask("record", "status", user="nobody").content
    assert f"Recording `{rid}` of **Voice**" in status, status
    for name in ("alice", "bob", "carol"):
        assert f"- {name}: " in status, status
    assert "0 dropped (queue full)" in status and "Worker lag:" in status, status
    reply = bot.ask("record", "stop")

    members = fake.config["members"]
    for name in ("alice", "bob", "carol"):
        assert f"- {name}: talked" in reply.content, reply.content
    files = zip_members(reply)
    expected = {f"{name}-{members[name]}.wav" for name in ("alice", "bob", "carol")}
    assert set(files) == expected

    folder = bot.recordings_dir / rid
    meta = manifest(folder)
    assert meta["status"] == "finished"
    talk = {s["display_name"]: s["talk_seconds"] for s in meta["speakers"]}
    assert set(talk) == {"alice", "bob", "carol"}
    for name, secs in talk.items():
        sent = talk_samples(runner, name)
        # In samples: 0.9 s against 1.1 s is 0.2000...07 apart in floats.
        assert abs(round(secs * 48000) - sent) <= 0.2 * 48000, \
            f"{name}: manifest says {secs} s of talk, {sent / 48000} s were sent"

    tracks = {}
    for name in ("alice", "bob", "carol"):
        filename = f"{name}-{members[name]}.wav"
        assert (folder / filename).read_bytes() == files[filename]
        tracks[name] = read_wav(files[filename])
    matched = check_tracks(tracks, runner, origin_guess(runner, meta["started_at"]))
    for name, samples in matched.items():
        assert samples >= 0.9 * talk_samples(runner, name), f"{name}: only {samples} samples matched"

    link = download_link(reply)
    status, page = http_get(link)
    assert status == 200 and b"alice" in page
    base, key = link.split("?key=")
    for filename, data in files.items():
        status, body = http_get(f"{base}/files/{filename}?key={key}")
        assert status == 200 and body == data, filename

    assert bot.terminate() == 0
    log = bot.log()
    assert fake.config["token"] not in log
    assert "Traceback" not in log
