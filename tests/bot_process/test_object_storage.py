"""Recordings in the object store, through the real bot process and moto's S3 server:
a finished recording is uploaded, recorded in the index and its folder removed, and
then everything is downloaded from the store through the bot's download server,
byte for byte as recorded; with the store unreachable at stop time the page serves
from local disk until the upload completes once the network is back, and meanwhile
``/healthz`` of the bot and of a download front say so and ``/metrics`` shows the
upload pending and its failed tries."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.objects import StorageSettings
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until
from tests.s3server import REGION, S3Server, s3_server, s3_settings  # noqa: F401 - fixtures
from tests.tcprelay import Relay

from .checks import download_link, http_get, play, read_wav, recording_id, zip_members
from .conftest import REPLY_TIMEOUT, START_TIMEOUT, BotProcess
from .front import running_front
from .ops import Samples, metric, scrape, wait_health, wait_metric

TWO = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.4, 1.2),)),
        SpeakerSpec("bob", 330.0, talks=(Talk(1.0, 2.0),)),
    ),
    duration=2.5,
)
#: An upload of a short recording to loopback takes well under this.
UPLOAD_TIMEOUT = 90.0


def _upload_row(bot: BotProcess, rid: str) -> tuple[Any, ...] | None:
    with sqlite3.connect(bot.recordings_dir / "index.sqlite3") as db:
        return db.execute("SELECT prefix, stored_at, local_removed FROM uploads WHERE recording_id = ?",
                          (rid,)).fetchone()


def _storage_env(settings: StorageSettings, endpoint: str, **more: str) -> dict[str, str]:
    return {"STORAGE_URL": settings.url, "STORAGE_ENDPOINT": endpoint, "STORAGE_REGION": REGION, **more}


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _made(url: str) -> bytes:
    """An encoded download, once made (202 with the progress page meanwhile)."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        status, _headers, body = _get(url)
        if status == 200:
            return body
        assert status == 202 and time.monotonic() < deadline, (status, body[:200])
        time.sleep(0.2)


def _record(fake: FakeDiscord, bot: BotProcess, note: str | None = None) -> tuple[str, str, dict[str, bytes]]:
    """Record TWO (with ``note``) and stop: the id, the link and the tracks as recorded (the stop's ZIP),
    with the notes' files when there is a note."""
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = play(fake, TWO)
    if note is not None:
        answer = bot.ask("record", "note", {"text": note}).content
        assert "Note at" in answer, answer
    fake.run(runner.wait_done(), timeout=TWO.duration + 30)
    reply = bot.ask("record", "stop")
    files = {n: data for n, data in zip_members(reply).items() if n != "manifest.json"}
    assert len([n for n in files if n.endswith(".wav")]) == 2, list(files)
    return rid, download_link(reply), files


def test_a_finished_recording_moves_to_the_store_and_downloads_come_from_there(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], s3_server: S3Server,
        s3_settings: StorageSettings) -> None:
    bot = start_bot(**_storage_env(s3_settings, s3_server.endpoint))
    rid, link, files = _record(fake, bot, note="the intro ends")
    recorded = {n: data for n, data in files.items() if n.endswith(".wav")}
    notes = {n: data for n, data in files.items() if n in ("labels.txt", "chapters.json")}
    assert len(notes) == 2, list(files)
    folder = bot.recordings_dir / rid
    wait_until(lambda: (_upload_row(bot, rid) or (None, None, 0))[2] == 1 and not folder.exists(),
               "the upload verified and the local folder removed", UPLOAD_TIMEOUT)
    prefix, stored_at, _removed = _upload_row(bot, rid)
    assert prefix == f"{rid}/" and stored_at is not None
    # As a download server on another machine would: no cached copy of the small files.
    shutil.rmtree(bot.recordings_dir / ".object-cache" / rid)

    admin = s3_server.client()
    keys = {o["Key"] for o in admin.list_objects_v2(Bucket=s3_settings.bucket)["Contents"]}
    base = f"{s3_settings.prefix}{rid}/"
    assert {base + n for n in (*recorded, "manifest.json", "activity.json")} <= keys
    for name, data in recorded.items():
        assert admin.get_object(Bucket=s3_settings.bucket, Key=base + name)["Body"].read() == data

    status, page = http_get(link)
    assert status == 200, page[:300]
    assert b"the intro ends" in page and page.count(b'class="note"') == 1
    key = link.split("key=", 1)[1]
    for name, data in notes.items():
        assert http_get(f"{bot.http_base}/r/{rid}/{name}?key={key}") == (200, data)
    for name, data in recorded.items():
        assert f"files/{name}?key={key}".encode() in page  # each track's player and link
        url = f"{bot.http_base}/r/{rid}/files/{name}?key={key}"
        status, headers, body = _get(url)
        assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"
        status, headers, body = _get(url, {"Range": "bytes=100-4099"})
        assert status == 206 and body == data[100:4100], status
        assert headers["Content-Range"] == f"bytes 100-4099/{len(data)}"
        status, headers, body = _get(url, {"Range": f"bytes=-{len(data) // 3}"})
        assert status == 206 and body == data[-(len(data) // 3):]
        status, headers, _body = _get(url, {"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
        # Encoded formats are made from a copy of the stored track: FLAC is lossless.
        flac = _made(f"{bot.http_base}/r/{rid}/flac/{name}?key={key}")
        np.testing.assert_array_equal(read_wav(flac), read_wav(data))
    status, zipped = http_get(f"{bot.http_base}/r/{rid}/all.zip?key={key}")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        assert {n: archive.read(n) for n in files} == files
    status, mix = http_get(f"{bot.http_base}/r/{rid}/mix.wav?key={key}")
    assert status == 200 and len(read_wav(mix)) == max(len(read_wav(d)) for d in recorded.values())
    assert not folder.exists()  # the cache is elsewhere; the folder never came back
    assert http_get(f"{bot.http_base}/r/{rid}/files/{next(iter(recorded))}?key=wrong")[0] == 404

    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert got.ephemeral and "kept in the object storage" in got.content and link in got.content, got.content

    # /recordings delete removes the objects too.
    assert "Deleted" in bot.ask("recordings", "delete", {"recording_id": rid}).content
    assert not admin.list_objects_v2(Bucket=s3_settings.bucket, Prefix=base).get("Contents")
    assert http_get(link)[0] == 404


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[Relay]:
    """The object store's network, which the test can cut."""
    port = int(re.search(r":(\d+)$", s3_server.endpoint).group(1))
    relay = Relay(port)
    yield relay
    relay.close()


def _uploads(samples: Samples) -> tuple[float, float]:
    """Uploads pending, and failed tries whatever the reason, on /metrics."""
    failed = sum(value for (name, _labels), value in samples.items() if name == "voice_recorder_upload_failures_total")
    return metric(samples, "voice_recorder_uploads_pending"), failed


def test_an_unreachable_store_at_stop_keeps_serving_from_disk_until_the_upload_completes(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], s3_server: S3Server,
        s3_settings: StorageSettings, relay: Relay, tmp_path: Path) -> None:
    # A request gives up after a second of failures, so failed tries show within seconds.
    bot = start_bot(**_storage_env(s3_settings, f"http://127.0.0.1:{relay.port}", STORAGE_RETRY_SECONDS="1"))
    with running_front(bot.env, tmp_path) as front:
        wait_health(bot.http_base, 200, START_TIMEOUT, {"status": "ready"})
        before = scrape(bot.http_base)
        assert _uploads(before) == (0, 0)
        assert metric(before, "voice_recorder_upload_failures_total", reason="store_unavailable") == 0
        assert metric(before, "voice_recorder_uploads_total") == 0
        relay.cut_after(0)
        rid, link, recorded = _record(fake, bot)
        folder = bot.recordings_dir / rid
        # Both processes say the store is away, without naming where it is.
        unready = {"status": "not ready", "reasons": ["object store: unreachable (connection closed)"]}
        wait_health(front.base, 503, UPLOAD_TIMEOUT, unready)
        wait_health(bot.http_base, 503, UPLOAD_TIMEOUT, unready)
        # The bot tries, and the store does not answer: the recording waits, its failed try is counted.
        during = wait_metric(bot.http_base, lambda m: _uploads(m)[0] == 1 and _uploads(m)[1] >= 1, UPLOAD_TIMEOUT,
                             "one upload pending and a failed try")
        assert metric(during, "voice_recorder_upload_failures_total", reason="store_unavailable") >= 1
        wait_until(lambda: relay.refused >= 3, "upload attempts during the outage", UPLOAD_TIMEOUT)
        assert folder.is_dir() and (_upload_row(bot, rid) or (None, None, 0))[1] is None
        status, page = http_get(link)
        assert status == 200, page[:300]
        key = link.split("key=", 1)[1]
        for name, data in recorded.items():
            status, headers, body = _get(f"{bot.http_base}/r/{rid}/files/{name}?key={key}", {"Range": "bytes=44-"})
            assert status == 206 and body == data[44:]
        assert folder.is_dir()

        relay.restore()
        wait_until(lambda: (_upload_row(bot, rid) or (None, None, 0))[2] == 1 and not folder.exists(),
                   "the upload verified once the store is back, and the local folder removed", UPLOAD_TIMEOUT)
        after = wait_metric(bot.http_base, lambda m: _uploads(m)[0] == 0, UPLOAD_TIMEOUT, "no upload pending")
        assert metric(after, "voice_recorder_uploads_total") == 1
        assert metric(after, "voice_recorder_upload_bytes_total") > sum(len(data) for data in recorded.values())
        wait_health(bot.http_base, 200, UPLOAD_TIMEOUT, {"status": "ready"})
        wait_health(front.base, 200, UPLOAD_TIMEOUT, {"status": "ready"})
        for name, data in recorded.items():
            status, _headers, body = _get(f"{bot.http_base}/r/{rid}/files/{name}?key={key}")
            assert status == 200 and body == data
            # The front serves it from the store too, the folder being gone.
            status, _headers, body = _get(f"{front.base}/r/{rid}/files/{name}?key={key}", {"Range": "bytes=44-"})
            assert status == 206 and body == data[44:]
    assert f"recording {rid} is in the object store" in bot.log()


def test_an_upload_a_restart_cut_short_resumes_at_the_next_start_and_keep_local_copy_keeps_the_folder(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], s3_server: S3Server,
        s3_settings: StorageSettings, relay: Relay) -> None:
    env = _storage_env(s3_settings, f"http://127.0.0.1:{relay.port}")
    bot = start_bot(**env)
    relay.cut_after(0)
    rid, link, recorded = _record(fake, bot)
    folder = bot.recordings_dir / rid
    wait_until(lambda: relay.refused >= 2, "upload attempts during the outage", UPLOAD_TIMEOUT)
    assert bot.terminate() == 0  # a restart does not wait for the store
    assert _upload_row(bot, rid) is None and folder.is_dir()

    relay.restore()
    again = start_bot(**env, KEEP_LOCAL_COPY="yes")
    wait_until(lambda: (_upload_row(again, rid) or (None, None, 0))[1] is not None,
               "the upload verified after the restart", UPLOAD_TIMEOUT)
    assert _upload_row(again, rid)[2] == 0 and folder.is_dir()  # the operator keeps local copies
    assert {n: (folder / n).read_bytes() for n in recorded} == recorded
    admin = s3_server.client()
    for name, data in recorded.items():
        key = f"{s3_settings.prefix}{rid}/{name}"
        assert admin.get_object(Bucket=s3_settings.bucket, Key=key)["Body"].read() == data
    assert http_get(link.replace(bot.http_base, again.http_base))[0] == 200


def test_a_recording_a_crash_cut_short_is_repaired_then_uploaded_and_served_from_the_store(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], s3_server: S3Server,
        s3_settings: StorageSettings) -> None:
    env = _storage_env(s3_settings, s3_server.endpoint)
    bot = start_bot(**env)
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.2, 60.0),)),),
                                          duration=60.0))
    track = bot.recordings_dir / rid / f"{fake.config['members']['alice']}.wav"
    # A second at 48 kHz, 16-bit mono, is 96,000 bytes after the header.
    wait_until(lambda: track.exists() and track.stat().st_size > 96_000 + 1024,
               "a second of alice on disk", REPLY_TIMEOUT)
    bot.kill()
    fake.run(runner.stop())
    fake.kick_from_voice(fake.config["bot_user_id"])  # Discord drops a dead client's voice state

    again = start_bot(**env)
    folder = again.recordings_dir / rid
    wait_until(lambda: (_upload_row(again, rid) or (None, None, 0))[2] == 1 and not folder.exists(),
               "the repaired recording uploaded and its folder removed", UPLOAD_TIMEOUT)
    admin = s3_server.client()
    base = f"{s3_settings.prefix}{rid}/"
    stored = json.loads(admin.get_object(Bucket=s3_settings.bucket, Key=base + "manifest.json")["Body"].read())
    assert stored["status"] == "interrupted" and len(stored["speakers"]) == 1
    name = stored["speakers"][0]["file"]
    data = admin.get_object(Bucket=s3_settings.bucket, Key=base + name)["Body"].read()
    assert len(read_wav(data)) >= 48_000  # the repaired track, readable
    with sqlite3.connect(again.recordings_dir / "index.sqlite3") as db:
        (secret,) = db.execute("SELECT secret FROM recordings WHERE id = ?", (rid,)).fetchone()
    status, page = http_get(f"{again.http_base}/r/{rid}?key={secret}")
    assert status == 200 and name.encode() in page
    status, headers, body = _get(f"{again.http_base}/r/{rid}/files/{name}?key={secret}", {"Range": "bytes=0-99"})
    assert status == 206 and body == data[:100]
    assert _get(f"{again.http_base}/r/{rid}/files/{name}?key={secret}")[2] == data
