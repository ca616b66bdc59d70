"""The download server over a real socket: the page, the uniform 404, Range,
streamed ZIP, mixdown, FLAC."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import struct
import time
import zipfile
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
import soundfile as sf

from bot.web import NOT_FOUND_BODY
from bot.web.activity import track_activity
from sinks.talk import BLOCK_FRAMES, TalkMeter
from tests.bot.conftest import SPEAKERS, Site


def get(site: Site, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    """Send ``path`` exactly as given (no client-side normalization)."""
    conn = http.client.HTTPConnection(urlsplit(site.base).netloc, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def path_of(site: Site, suffix: str, key: str | None = "") -> str:
    return site.url(suffix, key)[len(site.base) :]


def test_page_lists_speakers_escaped(site: Site) -> None:
    status, headers, body = get(site, path_of(site, f"/r/{site.rec.id}"))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Referrer-Policy"] == "no-referrer" and "default-src 'none'" in headers["Content-Security-Policy"]
    html = body.decode()
    assert "<script>" not in html and "<b>Bold</b>" not in html and "<i>" not in html
    assert "Alice &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Bob &quot;&amp;&quot; &lt;b&gt;Bold&lt;/b&gt;" in html and "Zoë 日本" in html
    assert html.count('<tr class="speaker"') == 3 and html.count("<audio ") == 3
    assert '<svg id="timeline"' in html and 'class="talk"' in html
    # Talk time from activity: Alice 1.0 s, Bob 1.4 s, Zoë 1.6 s -> shown rounded to seconds.
    rows = {uid: html.split(f'data-user="{uid}"')[1].split("</tr>")[0] for uid, *_ in SPEAKERS}
    def facts(duration: str, talk: str) -> str:
        return (f'<td class="fact" data-label="Duration">{duration}</td>'
                f'<td class="fact" data-label="Talk time">{talk}</td>')
    assert facts("0:03", "0:01") in rows[1111]
    assert facts("0:03", "0:01") in rows[2222]
    assert facts("0:02", "0:02") in rows[3333]
    assert "281.3 KiB" in rows[1111]


def test_timeline_is_computed_once_and_cached(site: Site) -> None:
    get(site, path_of(site, f"/r/{site.rec.id}"))
    cache = site.rec.directory / "activity.json"
    data = json.loads(cache.read_text())
    assert data["window_frames"] == BLOCK_FRAMES  # the engine's 20 ms talk blocks
    spans = {name: entry["spans"] for name, entry in data["tracks"].items()}
    assert spans[site.track(2222).name] == [[50, 100], [125, 145]]
    assert spans[site.track(3333).name] == [[0, 30], [75, 125]]
    before = cache.stat().st_mtime_ns
    status, _, body = get(site, path_of(site, f"/r/{site.rec.id}"))
    assert status == 200 and b'class="talk"' in body and cache.stat().st_mtime_ns == before


def test_timeline_talk_is_the_engines_talk(site: Site, tmp_path: Path) -> None:
    """The timeline's bars add up to what the engine's meter counts for the same audio."""
    for uid, *_ in SPEAKERS:
        samples = site.samples[uid][:-7]  # Zoë talks to the end: a partial last block, counted by its frames
        meter = TalkMeter(1)
        meter.feed(samples.astype("<i2").tobytes())
        path = tmp_path / f"{uid}.wav"
        sf.write(path, samples, 48000, subtype="PCM_16")
        activity = track_activity(path)
        assert activity.talk_seconds == meter.talk_frames / 48000
        assert activity.windows == -(-len(samples) // BLOCK_FRAMES)


def not_found_cases(site: Site) -> list[str]:
    rid, key = site.rec.id, site.rec.secret
    good = site.track(1111).name
    return [
        f"/r/{rid}",
        f"/r/{rid}?key=",
        f"/r/{rid}?key=wrong",
        f"/r/{rid}?key={key[:-1]}",
        f"/r/{rid}?key={key}x",
        f"/r/{rid}?key={site.other.secret}",
        f"/r/{site.other.id}?key={key}",
        f"/r/zzzzzzzz?key={key}",
        f"/r/{rid.upper()}?key={key}",
        f"/r/{site.running.id}?key={site.running.secret}",
        f"/r/{site.running.id}/files/5555.wav?key={site.running.secret}",
        f"/r/{site.expired.id}?key={site.expired.secret}",
        f"/r/{rid}/files/{good}",
        f"/r/{rid}/files/{good}?key={site.other.secret}",
        f"/r/{rid}/files/manifest.json?key={key}",
        f"/r/{rid}/files/1111.wav?key={key}",
        f"/r/{rid}/files/../manifest.json?key={key}",
        f"/r/{rid}/files/..%2Fmanifest.json?key={key}",
        f"/r/{rid}/files/%2e%2e%2f%2e%2e%2findex.sqlite3?key={key}",
        f"/r/{rid}/files/..%5C..%5Cindex.sqlite3?key={key}",
        f"/r/{rid}/files/%2Fetc%2Fpasswd?key={key}",
        f"/r/{rid}/files//etc/passwd?key={key}",
        f"/r/{rid}/flac/..%2F..%2F{site.other.id}%2Fmanifest.json?key={key}",
        f"/r/{rid}/files/{good}%00.txt?key={key}",
        f"/r/..%2F{rid}?key={key}",
        f"/r/{rid}%2Fmanifest.json?key={key}",
        f"/r/{rid}/manifest.json?key={key}",
        f"/r/{rid}/activity.json?key={key}",
        f"/r/{site.other.id}/all.zip?key={key}",
        f"/r/{site.other.id}/mix.wav?key={key}",
        f"/r/{site.expired.id}/all.zip?key={site.expired.secret}",
        "/index.sqlite3",
        "/",
        f"/{rid}/manifest.json",
    ]


def test_404_matrix_same_body(site: Site) -> None:
    cases = not_found_cases(site)
    assert len(cases) > 30
    for path in cases:
        status, headers, body = get(site, path)
        assert (status, body.decode()) == (404, NOT_FOUND_BODY), path
        assert headers["Content-Type"] == "text/plain; charset=utf-8", path
        assert site.rec.secret.encode() not in body
    for method in ("POST", "PUT", "DELETE"):
        assert get(site, path_of(site, f"/r/{site.rec.id}"), method=method)[:3:2] == (404, NOT_FOUND_BODY.encode())
    # The same paths with the right key work, so the 404s above are about the key/path.
    assert get(site, path_of(site, f"/r/{site.other.id}", site.other.secret))[0] == 200
    assert get(site, path_of(site, f"/r/{site.rec.id}/files/{quote(site.track(1111).name)}"))[0] == 200


def test_range_requests(site: Site) -> None:
    wav = site.track(3333)
    data = wav.read_bytes()
    path = path_of(site, f"/r/{site.rec.id}/files/{quote(wav.name)}")
    status, headers, body = get(site, path)
    assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "audio/wav" and "Content-Disposition" not in headers
    status, headers, body = get(site, path, {"Range": "bytes=0-99"})
    assert status == 206 and body == data[:100] and headers["Content-Range"] == f"bytes 0-99/{len(data)}"
    status, headers, body = get(site, path, {"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    status, headers, body = get(site, path, {"Range": "bytes=-500"})
    assert status == 206 and body == data[-500:]
    assert headers["Content-Range"] == f"bytes {len(data) - 500}-{len(data) - 1}/{len(data)}"
    for absurd in (f"bytes={len(data)}-", "bytes=99999999999-", "bytes=500-100", "bytes=abc"):
        status, headers, _ = get(site, path, {"Range": absurd})
        assert status == 416, absurd
    status, headers, _ = get(site, path + "&download=1")
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"filename*=UTF-8''{quote(wav.name, safe='')}" in disposition


def test_zip_stream(site: Site) -> None:
    status, headers, body = get(site, path_of(site, f"/r/{site.rec.id}/all.zip"))
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert int(headers["Content-Length"]) == len(body)  # the browser shows progress
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert sorted(names) == sorted([site.track(uid).name for uid, *_ in SPEAKERS] + ["manifest.json"])
        for uid, *_ in SPEAKERS:
            info = zf.getinfo(site.track(uid).name)
            assert info.compress_type == zipfile.ZIP_STORED
            assert zf.read(info) == site.track(uid).read_bytes()
        assert json.loads(zf.read("manifest.json"))["id"] == site.rec.id


def test_mixdown_is_clipped_sum(site: Site) -> None:
    status, headers, body = get(site, path_of(site, f"/r/{site.rec.id}/mix.wav"))
    assert status == 200 and int(headers["Content-Length"]) == len(body)
    mixed, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 48000
    length = max(len(s) for s in site.samples.values())
    expected = np.zeros(length, dtype=np.int32)
    for s in site.samples.values():
        expected[: len(s)] += s
    assert np.abs(expected).max() > 32767  # the tones overlap hard enough to need clipping
    np.testing.assert_array_equal(mixed, np.clip(expected, -32768, 32767).astype(np.int16))


def test_flac_is_lossless_and_cached(site: Site) -> None:
    wav = site.track(2222)
    path = path_of(site, f"/r/{site.rec.id}/flac/{quote(wav.name)}")
    status, headers, body = get(site, path + "&download=1")
    assert status == 200 and headers["Content-Type"] == "audio/flac" and body[:4] == b"fLaC"
    assert ".flac" in headers["Content-Disposition"]
    decoded, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 48000
    np.testing.assert_array_equal(decoded, site.samples[2222])
    cached = wav.with_suffix(".flac")
    assert cached.read_bytes() == body
    stamp = cached.stat().st_mtime_ns
    status, _, again = get(site, path, {"Range": "bytes=0-3"})
    assert (status, again) == (206, b"fLaC") and cached.stat().st_mtime_ns == stamp


def test_key_never_logged(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        get(site, path_of(site, f"/r/{site.rec.id}"))
        get(site, path_of(site, f"/r/{site.rec.id}", "wrong-key"))
    access = [r for r in caplog.records if r.name.startswith("aiohttp.access")]
    assert access and any(f"/r/{site.rec.id}" in r.getMessage() for r in access)
    assert not any(site.rec.secret in r.getMessage() or "wrong-key" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("export", ["all.zip", "mix.wav"])
def test_client_leaving_mid_download_stops_the_export(
    site: Site, export: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.bot.wavgen import tone, write_wav

    rec = site.store.create(9, "G", 9, "vc")
    for uid in (71, 72):  # 11 MiB each: more than socket buffers hold, so the server must wait on us
        write_wav(rec.directory / f"{uid}.wav", tone(300 + uid, 120.0))
    site.store.finish(rec.id, site.store.new_manifest(rec))
    with caplog.at_level(logging.DEBUG, logger="bot.web"):
        with socket.create_connection(("127.0.0.1", urlsplit(site.base).port), timeout=30) as sock:
            sock.sendall(f"GET /r/{rec.id}/{export}?key={rec.secret} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            received = 0
            while received < 256 * 1024:
                received += len(sock.recv(65536))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        deadline = time.monotonic() + 60
        while not any("download stopped" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the export kept running after the client left"
            time.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert get(site, path_of(site, f"/r/{site.rec.id}"))[0] == 200
