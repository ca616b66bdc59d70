"""Downloads in every format through the real download server: per track, all
tracks as a ZIP, the mixdown; made once, kept, shared; a progress page while
a long encode runs; a clear 404 for a format there is none of."""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
import soundfile as sf

from bot.storage import AsyncRecordingStore, Recording, RecordingStore
from bot.web import NOT_FOUND_BODY, WebServer, create_app
from bot.web.app import UNKNOWN_FORMAT_BODY
from bot.web.encoder import ENCODE_NICE, Encoder
from bot.web.exports import write_zip
from bot.web.zipstream import ZipMember, zip_length
from tests.bot.conftest import serving
from tests.bot.wavgen import RATE, bursts, write_wav

#: (user id, name, tone Hz, seconds, spans with sound): tracks of unequal length.
SPEAKERS = ((101, "Ann", 440.0, 3.0, [(0.2, 1.2)]), (102, "Ben", 660.0, 2.0, [(0.5, 1.9)]))
LOSSY = ("ogg", "mp3")
DEADLINE = 120.0
#: Seconds of a recording whose encode takes a while: long enough that five requests
#: and a kill land while it runs, even on a fast machine.
LONG = 60


class Server:
    """The running server, its store and one finished recording of two tones."""

    def __init__(self, base: str, store: RecordingStore, rec: Recording, samples: dict[int, np.ndarray]) -> None:
        self.base = base
        self.store = store
        self.rec = rec
        self.samples = samples

    def get(self, path: str, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
        return get(self.base, path, key if key is not None else self.rec.secret)

    def track(self, uid: int) -> Path:
        (path,) = self.rec.directory.glob(f"*-{uid}.wav")
        return path


def get(base: str, path: str, key: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=60)
    try:
        conn.request("GET", f"{path}?key={key}&download=1")
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def ready(server: Server, path: str, key: str | None = None) -> tuple[dict[str, str], bytes]:
    """GET ``path`` until the encode behind it is done (202 meanwhile, as a browser
    following the progress page's Refresh would)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        status, headers, body = server.get(path, key)
        if status != 202:
            assert status == 200, (status, body[:200])
            return headers, body
        assert headers["Refresh"] and b"<progress" in body
        assert time.monotonic() < deadline, f"{path} still being prepared"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = RecordingStore(tmp_path_factory.mktemp("downloads") / "recordings", retention_days=30)
    rec = store.create(1, "Guild", 7, "general")
    samples = {}
    for uid, name, freq, seconds, spans in SPEAKERS:
        samples[uid] = bursts(freq, seconds, spans, amplitude=0.4)
        write_wav(rec.directory / f"{uid}.wav", samples[uid])
        store.note_speaker(rec.id, uid, name)
    store.finish(rec.id, store.new_manifest(rec))
    try:
        with serving(WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)) as web:
            yield Server(f"http://127.0.0.1:{web.port}", store, store.get(rec.id), samples)
    finally:
        store.close()


def check_audio(data: bytes, fmt: str, expected: np.ndarray) -> None:
    """``data`` decodes back to ``expected``: sample for sample when lossless, else
    exactly as long, loud where it is loud and silent where it is silent."""
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == RATE
    assert len(decoded) == len(expected), (fmt, len(decoded), len(expected))
    if fmt in LOSSY:
        loud = np.abs(expected) > 1000
        got = decoded.astype(np.float64)
        want = expected.astype(np.float64)
        assert abs(np.sqrt(np.mean(got[loud] ** 2)) / np.sqrt(np.mean(want[loud] ** 2)) - 1) < 0.2
        quiet = np.convolve(loud, np.ones(4800), "same") == 0  # 50 ms away from any sound
        assert np.sqrt(np.mean(got[quiet] ** 2)) < 100
    else:
        np.testing.assert_array_equal(decoded, expected)


def mix_of(samples: dict[int, np.ndarray]) -> np.ndarray:
    total = np.zeros(max(len(s) for s in samples.values()), dtype=np.int32)
    for s in samples.values():
        total[: len(s)] += s
    return np.clip(total, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_each_track_in_each_format_decodes_back(server: Server, fmt: str) -> None:
    for uid, *_ in SPEAKERS:
        headers, body = ready(server, f"/r/{server.rec.id}/{fmt}/{quote(server.track(uid).name)}")
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Content-Disposition"].endswith(f".{fmt}") or f".{fmt}\"" in headers["Content-Disposition"]
        check_audio(body, fmt, server.samples[uid])


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_the_mixdown_in_each_format_decodes_back(server: Server, fmt: str) -> None:
    headers, body = ready(server, f"/r/{server.rec.id}/mix.{fmt}")
    assert int(headers["Content-Length"]) == len(body)
    check_audio(body, fmt, mix_of(server.samples))


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_the_zip_in_each_format_has_its_length_and_decodes_back(server: Server, fmt: str) -> None:
    headers, body = ready(server, f"/r/{server.rec.id}/all.{fmt}.zip")
    assert headers["Content-Type"] == "application/zip"
    assert int(headers["Content-Length"]) == len(body)  # the browser shows progress, and it is right
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        names = {n: archive.read(n) for n in archive.namelist()}
    assert set(names) == {server.track(uid).name.replace(".wav", f".{fmt}") for uid, *_ in SPEAKERS} | {
        "manifest.json"}
    for uid, *_ in SPEAKERS:
        check_audio(names[server.track(uid).name.replace(".wav", f".{fmt}")], fmt, server.samples[uid])


def test_a_second_download_is_served_from_the_kept_file(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    store = server.store
    rec = store.create(1, "Guild", 7, "general")
    write_wav(rec.directory / "103.wav", bursts(330.0, 2.0, [(0.1, 1.5)]))
    store.note_speaker(rec.id, 103, "Cy")
    store.finish(rec.id, store.new_manifest(rec))
    rec = store.get(rec.id)
    with caplog.at_level(logging.INFO, logger="bot.web.encoder"):
        _, first = ready(server, f"/r/{rec.id}/all.flac.zip", rec.secret)
        encoded = [r for r in caplog.records if r.getMessage().startswith("encoded ")]
        assert len(encoded) == 1
        kept = rec.directory / "cy-103.flac"
        stamp = kept.stat().st_mtime_ns
        status, _, again = get(server.base, f"/r/{rec.id}/all.flac.zip", rec.secret)
        assert status == 200 and again == first
        status, _, track = get(server.base, f"/r/{rec.id}/flac/cy-103.wav", rec.secret)
        assert status == 200 and track == kept.read_bytes()
        assert [r for r in caplog.records if r.getMessage().startswith("encoded ")] == encoded
        assert kept.stat().st_mtime_ns == stamp
    page = get(server.base, f"/r/{rec.id}", rec.secret)[2].decode()
    size = zip_length([ZipMember.of(kept), ZipMember.of(rec.directory / "manifest.json")])
    assert "made on request" in page and f"({size / 1024:.1f} KiB)" in page  # the FLAC ZIP's size, now known
    assert store.delete(rec.id) and not kept.exists()  # goes with the recording


def test_a_long_encode_shows_progress_and_concurrent_requests_share_it(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Five visitors ask for the Ogg Opus mixdown of a long recording at once: each is
    answered at once (the progress page), one encode runs, all get the same file.

    Its own server answers with the progress page as soon as an encode is not done
    (no ready wait): with the default second, a fast machine may finish first."""
    store = server.store
    rec = store.create(1, "Guild", 7, "general")
    for uid in (104, 105):
        write_wav(rec.directory / f"{uid}.wav", bursts(200.0 + uid, LONG, [(5.0, LONG - 5.0)], amplitude=0.3))
        store.note_speaker(rec.id, uid, f"S{uid}")
    store.finish(rec.id, store.new_manifest(rec))
    rec = store.get(rec.id)
    path = f"/r/{rec.id}/mix.ogg"
    with caplog.at_level(logging.INFO, logger="bot.web.encoder"), \
            serving(WebServer(create_app(AsyncRecordingStore(store), ready_wait=0.0), "127.0.0.1", 0)) as web:
        impatient = Server(f"http://127.0.0.1:{web.port}", store, server.rec, server.samples)
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: get(impatient.base, path, rec.secret), range(5)))
        assert {status for status, _, _ in answers} == {202}, "the encode finished before anyone waited"
        assert not (rec.directory / "mix.ogg").exists()  # nothing half-made where the file will be
        bodies = {ready(impatient, path, rec.secret)[1] for _ in range(3)}
        encoded = [r for r in caplog.records if "mix.ogg" in r.getMessage() and r.getMessage().startswith("encoded ")]
    assert len(encoded) == 1 and len(bodies) == 1
    assert sf.info(io.BytesIO(bodies.pop())).frames == LONG * RATE


def test_a_format_there_is_none_of_gets_a_clear_404(server: Server) -> None:
    rid, track = server.rec.id, quote(server.track(101).name)
    for path in (f"/r/{rid}/all.aac.zip", f"/r/{rid}/mix.aac", f"/r/{rid}/aac/{track}"):
        status, headers, body = server.get(path)
        assert (status, body.decode()) == (404, UNKNOWN_FORMAT_BODY), path
        assert headers["Content-Type"].startswith("text/plain")
        # Without the key, the same 404 as for anything else: no oracle.
        assert server.get(path, "x" * 32)[2].decode() == NOT_FOUND_BODY


def test_a_killed_encode_leaves_no_file_that_is_served(server: Server, tmp_path: Path) -> None:
    """An encode killed halfway leaves its temporary file only; the server makes and
    serves a whole one."""
    store = server.store
    rec = store.create(1, "Guild", 7, "general")
    write_wav(rec.directory / "106.wav", bursts(300.0, LONG, [(0.0, LONG)], amplitude=0.3))
    store.note_speaker(rec.id, 106, "Di")
    store.finish(rec.id, store.new_manifest(rec))
    rec = store.get(rec.id)
    wav, target = rec.directory / "di-106.wav", rec.directory / "di-106.mp3"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, pathlib; from bot.web.encode import FORMATS, encode_track; "
        "encode_track(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), FORMATS['mp3'], lambda f: None)"),
        str(wav), str(target)], env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    deadline = time.monotonic() + DEADLINE
    while not any(p.name.endswith(".tmp") and p.stat().st_size > 0 for p in rec.directory.iterdir()):
        assert child.poll() is None and time.monotonic() < deadline, "the encode never started writing"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not target.exists()
    _, body = ready(server, f"/r/{rec.id}/mp3/di-106.wav", rec.secret)
    assert sf.info(io.BytesIO(body)).frames == LONG * RATE


def test_zip64_past_4_gib_has_the_promised_length_and_opens(tmp_path: Path) -> None:
    """A member just past 4 GiB (a sparse file) and a small one after it: ZIP64 sizes
    and offsets, the length known up front; the archive is written sparse too."""
    big = tmp_path / "big.wav"
    size = (1 << 32) + (1 << 20)
    with open(big, "wb") as f:
        f.truncate(size)
    small = tmp_path / "small.txt"
    small.write_bytes(b"after the big one")
    members = [ZipMember.of(big), ZipMember.of(small)]
    out_path = tmp_path / "out.zip"
    written = 0
    zeros = b""
    with open(out_path, "wb") as out:
        def write(chunk: bytes) -> None:
            nonlocal written, zeros
            if len(zeros) != len(chunk):
                zeros = bytes(len(chunk))
            if chunk == zeros:
                out.seek(len(chunk), os.SEEK_CUR)  # zeros: a hole, not 4.5 GiB of disk
            else:
                out.write(chunk)
            written += len(chunk)
        write_zip(members, write)
        out.truncate()
    assert written == zip_length(members) == out_path.stat().st_size
    with zipfile.ZipFile(out_path) as archive:
        info = archive.getinfo("big.wav")
        assert info.file_size == size and info.compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("small.txt").header_offset > 1 << 32
        assert archive.read("small.txt") == b"after the big one"


def test_encodes_run_on_their_own_thread_at_the_lowest_priority(tmp_path: Path) -> None:
    """Not on the recording workers' threads, not on the web server's: one of the
    encoder's own, at nice 19, so a live recording wins the CPU."""
    seen: list[tuple[str, int]] = []

    def encode(target: Path, progress: object) -> None:
        seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        target.write_bytes(b"done")

    encoder = Encoder()
    try:
        job = encoder.job(tmp_path / "out.bin", encode)
        assert job.future.result(timeout=DEADLINE) == tmp_path / "out.bin"
    finally:
        encoder.shutdown()
    (name, nice), = seen
    assert name.startswith("encode") and nice == ENCODE_NICE == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19  # this thread is untouched
