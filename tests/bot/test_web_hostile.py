"""Hostile requests against the download server over real sockets (issue #7):
path traversal in every spelling, wrong/truncated/borrowed keys on every
endpoint, absurd Range headers, oversized request lines and headers, slowloris
clients and downloads that never read, files planted next to and inside the
recordings. Nothing outside a recording is served, every "not yours" answer is
byte-identical, no key reaches the logs, and the server keeps serving.

The server is the one the bot runs (``WebServer(create_app(AsyncRecordingStore(store)), ...)``),
with its two timeouts shortened so the slow-client tests take seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import io
import logging
import os
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from bot.storage import AsyncRecordingStore, Recording, RecordingStore
from bot.web import NOT_FOUND_BODY, WebServer, create_app
from tests.bot.conftest import serving
from tests.bot.wavgen import bursts, tone, write_wav

#: Short versions of the server's timeouts (20 s idle, 60 s send) so slow clients are dropped quickly here.
IDLE_TIMEOUT = 1.5
SEND_TIMEOUT = 2.0
#: What the planted file says; no response may ever contain it.
SECRET = b"TOP-SECRET-planted-next-to-the-recordings"
#: Generous: the machine is shared; nothing here is a timing assertion.
DEADLINE = 60.0


@dataclasses.dataclass
class Hostile:
    """The running server, its store and what it holds."""

    port: int
    store: RecordingStore
    a: Recording  # finished: two real tracks plus one that is a planted symlink
    b: Recording  # finished, another guild
    running: Recording  # still recording
    secret: Path  # a file next to the recordings folder
    linked: str  # A's track whose file is a symlink to the secret

    def tracks(self, rec: Recording) -> list[str]:
        """The names of ``rec``'s tracks that are regular files (planted symlinks left out)."""
        return sorted(p.name for p in rec.directory.glob("*.wav") if not p.is_symlink())

    def keys(self) -> list[str]:
        """Every download key the server knows."""
        return [self.a.secret, self.b.secret, self.running.secret]


def _finish(store: RecordingStore, rec: Recording, tracks: dict[int, np.ndarray]) -> Recording:
    for uid, samples in tracks.items():
        write_wav(rec.directory / f"{uid}.wav", samples)
        store.note_speaker(rec.id, uid, f"speaker {uid}")
    store.finish(rec.id, store.new_manifest(rec))
    finished = store.get(rec.id)
    assert finished is not None
    return finished


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_bytes(SECRET)
    store = RecordingStore(root / "recordings", retention_days=30)
    a = _finish(store, store.create(1, "A guild", 10, "vc"), {
        11: bursts(440.0, 2.0, [(0.2, 1.0)]), 12: bursts(660.0, 2.0, [(1.0, 1.8)]), 13: tone(880.0, 0.5),
    })
    (linked,) = [p.name for p in a.directory.glob("*-13.wav")]
    (a.directory / linked).unlink()
    (a.directory / linked).symlink_to(secret)
    b = _finish(store, store.create(2, "B guild", 20, "vc"), {21: bursts(300.0, 1.5, [(0.0, 1.5)])})
    running = store.create(1, "A guild", 10, "vc")
    write_wav(running.directory / "31.wav", tone(500.0, 1.0))

    # As the bot builds it (bot/app.py), with short timeouts.
    app = create_app(AsyncRecordingStore(store), send_timeout=SEND_TIMEOUT)
    server = WebServer(app, "127.0.0.1", 0, idle_timeout=IDLE_TIMEOUT)
    try:
        with serving(server):
            yield Hostile(server.port, store, a, b, running, secret, linked)
    finally:
        store.close()


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]  # lower-cased names, Date left out, sorted
    body: bytes


def exchange(port: int, raw: bytes, method: str = "GET") -> Reply:
    """Send ``raw`` bytes as they are (no client-side normalization or checks)
    and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we finished sending: its answer is already in our buffer
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        body = response.read()
        headers = tuple(sorted((k.lower(), v) for k, v in response.getheaders() if k.lower() != "date"))
        return Reply(response.status, headers, body)


def request(port: int, target: str | bytes, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    """One request with ``target`` as the request-target, byte for byte."""
    line = target.encode("latin-1") if isinstance(target, str) else target
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
    raw = method.encode() + b" " + line + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"\r\n"
    return exchange(port, raw, method)


def assert_no_keys_logged(caplog: pytest.LogCaptureFixture, keys: list[str]) -> None:
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert not any(key in text for key in keys), text


def assert_serving(h: Hostile) -> None:
    """The server still answers a normal request correctly."""
    reply = request(h.port, f"/r/{h.b.id}?key={h.b.secret}")
    assert reply.status == 200 and b"<audio " in reply.body


def endpoints(h: Hostile, rec: Recording) -> list[str]:
    track = quote(h.tracks(rec)[0])
    return [f"/r/{rec.id}", f"/r/{rec.id}/files/{track}", f"/r/{rec.id}/flac/{track}",
            f"/r/{rec.id}/all.zip", f"/r/{rec.id}/mix.wav"]


def test_not_yours_is_one_identical_404(hostile: Hostile, caplog: pytest.LogCaptureFixture) -> None:
    """Wrong, truncated, extended, re-cased and borrowed keys, unknown ids and a
    recording still running: on every endpoint, the same bytes as a request for
    an id that does not exist, so nothing tells whether a recording exists."""
    h = hostile
    ka = h.a.secret
    reference = request(h.port, f"/r/zzzzzzzz?key={ka}")
    assert reference.status == 404 and reference.body == NOT_FOUND_BODY.encode()

    def wrong_keys(key: str) -> list[str | None]:
        return [
            None, "", "x", "wrong", "A" * len(key), key[:-1], key[: len(key) // 2], key[1:], key + "x",
            key.swapcase(), key.upper(), f"{key}%00", f"%20{key}", f"{key}%20", quote(key + "\n"), "A" * 4000,
        ]

    cases = []
    with caplog.at_level(logging.DEBUG):
        for rec, other in ((h.a, h.b), (h.b, h.a)):
            for path in endpoints(h, rec):
                for key in [*wrong_keys(rec.secret), other.secret, h.running.secret]:
                    cases.append(path if key is None else f"{path}?key={key}")
                cases.append(f"{path}?key=wrong&key={rec.secret}")  # only the first key counts
                cases.append(f"{path}?KEY={rec.secret}")
                cases.append(path.replace(rec.id, rec.id.upper()) + f"?key={rec.secret}")
        for path in endpoints(h, h.a):  # ids that do not exist, with a real key
            cases.append(path.replace(h.a.id, "zzzzzzzz") + f"?key={ka}")
            cases.append(path.replace(h.a.id, h.a.id[:-1]) + f"?key={ka}")
            cases.append(path.replace(h.a.id, h.a.id + "2") + f"?key={ka}")
        for path in (f"/r/{h.running.id}", f"/r/{h.running.id}/files/31.wav", f"/r/{h.running.id}/all.zip",
                     f"/r/{h.running.id}/mix.wav", f"/r/{h.running.id}/flac/31.wav"):
            cases.append(f"{path}?key={h.running.secret}")
        # B's track name under A (and A's under B), with the key of either.
        for rec, other in ((h.a, h.b), (h.b, h.a)):
            for key in (rec.secret, other.secret):
                cases.append(f"/r/{rec.id}/files/{quote(h.tracks(other)[0])}?key={key}")
        assert len(cases) > 200
        for target in cases:
            assert request(h.port, target) == reference, target
        for target in (f"/r/{h.a.id}/files/{quote(h.tracks(h.a)[0])}?key=x", f"/r/zzzzzzzz/files/x.wav?key={ka}"):
            head = request(h.port, target, method="HEAD")
            assert (head.status, head.body) == (404, b"") and head.headers == reference.headers, target
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            assert request(h.port, f"/r/{h.a.id}?key={ka}", method=method) == reference, method
    # The same endpoints with the right key answer, so every 404 above was the key's doing.
    for rec in (h.a, h.b):
        for path in endpoints(h, rec):
            assert request(h.port, f"{path}?key={rec.secret}").status == 200, path
    assert_no_keys_logged(caplog, h.keys() + [k for k in wrong_keys(ka) if k and len(k) > 3])


def traversal_targets(h: Hostile) -> list[str | bytes]:
    """Ways to name a file outside a recording (or a non-track file inside one)."""
    rid, key, good = h.a.id, h.a.secret, quote(h.tracks(h.a)[0])
    absolute = quote(str(h.secret), safe="")
    db = quote(str(h.store.database_path), safe="")
    names = [
        "../../secret.txt", "..%2F..%2Fsecret.txt", "..%2f..%2fsecret.txt", "%2e%2e%2f%2e%2e%2fsecret.txt",
        "%2E%2E%2F%2E%2E%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt", ".%2e/.%2e/secret.txt",
        "..%252f..%252fsecret.txt", "%252e%252e%252f%252e%252e%252fsecret.txt",  # double-encoded
        "%25252e%25252e%25252fsecret.txt",  # triple-encoded
        "..\\..\\secret.txt", "..%5C..%5Csecret.txt", "..%5c..%5csecret.txt", "..%255c..%255csecret.txt",
        absolute, "%2F" + absolute, "/" + absolute, db, "%2Fetc%2Fpasswd", "/etc/passwd",
        "file:%2F%2F%2Fetc%2Fpasswd", f"{good}%00", f"{good}%00.txt", f"%00{good}", "..%00%2F..%2Fsecret.txt",
        "%E2%80%A4%E2%80%A4%2F%E2%80%A4%E2%80%A4%2Fsecret.txt",  # one-dot leaders (NFKC: "..")
        "%EF%BC%8E%EF%BC%8E%EF%BC%8F%EF%BC%8E%EF%BC%8E%EF%BC%8Fsecret.txt",  # fullwidth dots and slash
        "%C0%AE%C0%AE%C0%AF%C0%AE%C0%AE%C0%AFsecret.txt",  # overlong UTF-8 dots and slash
        "%E0%80%AE%E0%80%AE%2Fsecret.txt", "%ED%A0%80", "%FF%FE",
        f"..%2F..%2F{h.b.id}%2F{quote(h.tracks(h.b)[0])}", f"..%2F{h.b.id}%2Fmanifest.json",
        "manifest.json", "activity.json", "..", ".", "%2e", "%2e%2e", "~", "*", f"{good}/", f"./{good}x",
        quote(h.linked), "secret.txt", "..%2Fsecret.txt", "index.sqlite3", "..%2Findex.sqlite3",
    ]
    targets: list[str | bytes] = []
    for endpoint in ("files", "flac"):
        targets += [f"/r/{rid}/{endpoint}/{name}?key={key}" for name in names]
    targets += [
        f"/r/..%2F..%2Fsecret.txt?key={key}", f"/r/%2e%2e?key={key}", f"/r/..?key={key}", f"/r/.?key={key}",
        f"/r/{absolute}?key={key}", f"/r/{rid}%2F..%2F..%2Fsecret.txt?key={key}",
        f"/r/{rid}%2Fmanifest.json?key={key}", f"/r/{rid}/manifest.json?key={key}",
        f"/r/{rid}/activity.json?key={key}", f"/r/{rid}/{quote(h.tracks(h.a)[0])}?key={key}",
        f"/r/{rid}/all.zip/..%2F..%2Fsecret.txt?key={key}", f"/r/{rid}/mix.wav%2F..%2F..%2Fsecret.txt?key={key}",
        f"/r/{rid}/../../secret.txt?key={key}", f"/r/{rid}/files/../../../secret.txt?key={key}",
        f"/r/{rid}\\..\\..\\secret.txt?key={key}", f"/r/{rid}%5C..%5C..%5Csecret.txt?key={key}",
        f"/r/{h.b.id}/../{rid}/files/{quote(h.linked)}?key={key}",
        "/secret.txt", "/../secret.txt", "/%2e%2e/secret.txt", "//secret.txt", "/recordings/index.sqlite3",
        f"/recordings/{rid}/manifest.json", f"/{rid}/manifest.json", "/index.sqlite3", "/", "/r/", "/r",
        "http://t/../secret.txt", f"http://t/r/{rid}/files/..%2F..%2Fsecret.txt?key={key}",
        "*", "/" + "/".join([".."] * 30) + "/etc/passwd",
        # Raw bytes the parser must refuse outright: NUL, backslash-free control bytes, invalid UTF-8.
        f"/r/{rid}/files/{good}\x00.txt?key={key}".encode(), f"/r/{rid}/files/\xff\xfe?key={key}".encode("latin-1"),
        f"/r/{rid}/files/..\x01..?key={key}".encode(),
    ]
    return targets


def test_traversal_never_leaves_the_recording(hostile: Hostile, caplog: pytest.LogCaptureFixture) -> None:
    """Every spelling of "a file outside" gets the uniform 404, or 400 when the
    HTTP parser refuses the line itself; never a 5xx, never a file's bytes."""
    h = hostile
    reference = request(h.port, f"/r/zzzzzzzz?key={h.a.secret}")
    outside = [SECRET, h.store.database_path.read_bytes()[:16], b"root:", b"RIFF", b'"recording_id"', b'"tracks"']
    refused = 0
    with caplog.at_level(logging.DEBUG):
        targets = traversal_targets(h)
        for target in targets:
            reply = request(h.port, target)
            if reply.status == 400:  # the parser's own refusal: allowed only for bytes no URL may hold
                assert isinstance(target, bytes) or target == "*", target
                refused += 1
            else:
                assert reply == reference, target
            assert not any(marker in reply.body for marker in outside), target
    assert refused == 4  # the raw NUL, control byte and invalid UTF-8 lines, and "*"
    assert_serving(h)
    assert_no_keys_logged(caplog, h.keys())


def test_planted_files_are_never_served(hostile: Hostile) -> None:
    """A secret file next to the recordings, a manifest track that is a symlink
    to it and a symlink under a FLAC copy's name: none of it comes out of the
    page, a track URL, the FLAC route, the ZIP or the mixdown."""
    h = hostile
    key = h.a.secret
    reference = request(h.port, f"/r/zzzzzzzz?key={key}")
    for endpoint in ("files", "flac"):
        assert request(h.port, f"/r/{h.a.id}/{endpoint}/{quote(h.linked)}?key={key}") == reference
    good = h.tracks(h.a)[1]
    flac_name = good.removesuffix(".wav") + ".flac"
    (h.a.directory / flac_name).symlink_to(h.secret)
    reply = request(h.port, f"/r/{h.a.id}/flac/{quote(good)}?key={key}")
    assert reply.status == 200 and reply.body[:4] == b"fLaC" and SECRET not in reply.body
    assert not (h.a.directory / flac_name).is_symlink()  # replaced by a real FLAC, the secret untouched
    assert h.secret.read_bytes() == SECRET

    page = request(h.port, f"/r/{h.a.id}?key={key}")
    assert page.status == 200 and SECRET not in page.body
    assert page.body.count(b"<audio ") == 2 and h.linked.encode() not in page.body
    archive = request(h.port, f"/r/{h.a.id}/all.zip?key={key}")
    assert archive.status == 200 and SECRET not in archive.body
    with zipfile.ZipFile(io.BytesIO(archive.body)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == sorted([*h.tracks(h.a), "manifest.json"])
        for name in h.tracks(h.a):
            assert zf.read(name) == (h.a.directory / name).read_bytes()
    mix = request(h.port, f"/r/{h.a.id}/mix.wav?key={key}")
    assert mix.status == 200 and mix.body[:4] == b"RIFF" and SECRET not in mix.body


def test_absurd_range_headers(hostile: Hostile) -> None:
    """Huge, negative, overflowing, repeated and garbage ranges: 206 for one
    satisfiable range, 200 (whole file) where RFC 9110 says ignore, 416 for the
    rest; never a 5xx, never bytes outside the file."""
    h = hostile
    name = h.tracks(h.a)[0]
    data = (h.a.directory / name).read_bytes()
    size = len(data)
    path = f"/r/{h.a.id}/files/{quote(name)}?key={h.a.secret}"
    cases: list[tuple[str, int, bytes | None]] = [
        ("bytes=0-99", 206, data[:100]),
        (f"bytes=0-{2**64}", 206, data),
        (f"bytes=0-{2**64 - 1}", 206, data),
        (f"bytes=10-{10**300}", 206, data[10:]),
        (f"bytes=-{2**64 + 1}", 206, data),
        (f"bytes={size - 1}-", 206, data[-1:]),
        (f"bytes={2**64}-", 416, None),
        (f"bytes={2**63 - 1}-{2**63}", 416, None),
        (f"bytes={size}-{size + 10}", 416, None),
        ("bytes=" + "9" * 5000 + "-", 416, None),  # beyond int()'s digit limit
        ("bytes=0-" + "9" * 5000, 416, None),
        ("bytes=-" + "9" * 5000, 416, None),
        ("bytes=-5-10", 416, None), ("bytes=--1", 416, None), ("bytes=-0", 416, None), ("bytes=-", 416, None),
        ("bytes=5-1", 416, None), ("bytes=0x10-", 416, None), ("bytes=1e3-", 416, None), ("bytes=+5-", 416, None),
        ("bytes=1.5-2", 416, None), ("bytes=abc", 416, None), ("bytes=\u0663-", 416, None),  # Arabic-Indic 3
        ("bytes=\xbd-", 416, None), ("bytes=0-1;2-3", 416, None), ("bytes=,,,", 416, None),
        ("bytes=" + ",".join(["0-0"] * 1500), 200, data),  # several ranges: ignored, whole file
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(1000)), 200, data),
        ("bytes=0-0,-1", 200, data),
        ("bytes=, 0-9 ,", 206, data[:10]),
        ("bytes = 0-9", 206, data[:10]),
        ("BYTES=0-9", 206, data[:10]),
        ("items=0-9", 200, data), ("0-9", 200, data), ("bytes", 200, data), ("=", 200, data), ("", 200, data),
    ]
    for header, status, body in cases:
        reply = request(h.port, path, {"Range": header})
        assert reply.status == status, header[:60]
        if body is not None:
            assert reply.body == body, header[:60]
        if status == 416:
            assert dict(reply.headers)["content-range"] == f"bytes */{size}", header[:60]
            assert len(reply.body) < 100
    # A Range on streamed exports and on 404s changes nothing.
    assert request(h.port, f"/r/{h.a.id}/all.zip?key={h.a.secret}", {"Range": f"bytes={2**64}-"}).status == 200
    reference = request(h.port, f"/r/zzzzzzzz?key={h.a.secret}")
    assert request(h.port, f"/r/zzzzzzzz?key={h.a.secret}", {"Range": "bytes=-1"}) == reference
    # Two Range headers: the first is used, never both.
    raw = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nRange: bytes=0-3\r\nRange: bytes=4-7\r\n\r\n"
    reply = exchange(h.port, raw.encode())
    assert (reply.status, reply.body) == (206, data[:4])
    assert_serving(h)


def test_oversized_requests_get_a_clean_4xx(hostile: Hostile, caplog: pytest.LogCaptureFixture) -> None:
    """Request lines, headers and header counts past the parser's limits are
    refused with 400 (never 5xx, nothing logged at ERROR, no key in the log);
    just under the limits the request is answered normally."""
    h = hostile
    reference = request(h.port, f"/r/zzzzzzzz?key={h.a.secret}")
    page = f"/r/{h.a.id}?key={h.a.secret}"
    with caplog.at_level(logging.DEBUG):
        assert request(h.port, f"/r/{h.a.id}?key={'k' * 8000}") == reference  # long, but within limits
        assert request(h.port, f"{page}&pad={'p' * 7000}").status == 200
        assert request(h.port, page, {"X-Pad": "p" * 8000}).status == 200
        for size in (9000, 65536, 1 << 20):
            assert request(h.port, f"{page}&pad={'p' * size}").status == 400, size
            assert request(h.port, page, {"X-Pad": "p" * size}).status == 400, size
            assert request(h.port, f"/r/{h.a.id}/{'d/' * (size // 2)}?key={h.a.secret}").status == 400, size
        many = {f"X-{i}": "v" for i in range(1000)}
        assert request(h.port, page, many).status == 400
        assert exchange(h.port, b"G" * 70000 + b" / HTTP/1.1\r\nHost: t\r\n\r\n").status == 400
        assert exchange(h.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Folded: a\r\n b\r\n" * 50 + b"\r\n").status == 400
        assert_serving(h)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert_no_keys_logged(caplog, h.keys())


class _Trickler:
    """A slowloris client: sends its request one byte at a time, never finishing."""

    def __init__(self, port: int, request_line: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.pending = request_line + b"\r\nHost: t\r\nX-Slow: " + b"s" * 100_000
        self.dropped = False
        self.answered = b""

    def tick(self) -> None:
        """Send the next byte; notice when the server has closed the connection."""
        if self.dropped:
            return
        try:
            self.sock.sendall(self.pending[:1])
            self.pending = self.pending[1:]
            self.sock.setblocking(False)
            try:
                got = self.sock.recv(1024)
                self.answered += got
                self.dropped = got == b""
            except BlockingIOError:
                pass
            finally:
                self.sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            self.dropped = True

    def close(self) -> None:
        self.sock.close()


def test_slowloris_clients_are_dropped_while_others_are_served(hostile: Hostile) -> None:
    """Clients trickling a header byte at a time (much faster than the idle
    timeout, so only a deadline on the whole request can stop them) are closed
    by the server, without an answer, while normal requests are served."""
    h = hostile
    slow = [_Trickler(h.port, f"GET /r/{h.a.id}?key={h.a.secret} HTTP/1.1".encode()) for _ in range(30)]
    try:
        served = 0
        deadline = time.monotonic() + DEADLINE
        while not all(s.dropped for s in slow):
            assert time.monotonic() < deadline, f"{sum(not s.dropped for s in slow)} slow clients still connected"
            for s in slow:
                s.tick()
            assert_serving(h)
            served += 1
            time.sleep(IDLE_TIMEOUT / 10)
        # The server waited for each request over several ticks, then cut it off without an answer.
        assert served > 5 and not any(s.answered for s in slow)
    finally:
        for s in slow:
            s.close()
    assert_serving(h)


def test_downloads_that_never_read_neither_block_others_nor_stay(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    """More never-reading ZIP and mixdown downloads than the server has export
    threads: a first page view (its timeline is computed on the same pool), a
    ZIP and a FLAC of another recording still complete; after the send timeout
    the stalled connections are closed."""
    h = hostile
    big = _finish(h.store, h.store.create(3, "Big", 30, "vc"), {41: tone(310.0, 120.0), 42: tone(420.0, 120.0)})
    fresh = _finish(h.store, h.store.create(3, "Fresh", 30, "vc"), {51: bursts(330.0, 1.0, [(0.1, 0.6)])})
    stalled = []
    with caplog.at_level(logging.DEBUG, logger="bot.web"):
        try:
            for export in ["all.zip"] * 4 + ["mix.wav"] * 4:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window fills at once
                sock.settimeout(DEADLINE)
                sock.connect(("127.0.0.1", h.port))
                sock.sendall(f"GET /r/{big.id}/{export}?key={big.secret} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                stalled.append(sock)
            page = request(h.port, f"/r/{fresh.id}?key={fresh.secret}")
            assert page.status == 200 and b'class="talk"' in page.body
            archive = request(h.port, f"/r/{fresh.id}/all.zip?key={fresh.secret}")
            with zipfile.ZipFile(io.BytesIO(archive.body)) as zf:
                assert zf.testzip() is None and len(zf.namelist()) == 2
            track = h.tracks(fresh)[0]
            flac = request(h.port, f"/r/{fresh.id}/flac/{quote(track)}?key={fresh.secret}")
            assert flac.status == 200 and flac.body[:4] == b"fLaC"
            deadline = time.monotonic() + DEADLINE
            while sum("stalled" in r.getMessage() for r in caplog.records) < len(stalled):
                assert time.monotonic() < deadline, "stalled downloads were not cut off"
                time.sleep(0.1)
            for sock in stalled:  # what was sent before the cut can be read; then the connection ends
                received = 0
                try:
                    while chunk := sock.recv(1 << 16):
                        received += len(chunk)
                except ConnectionResetError:
                    pass
                assert received < (big.directory / h.tracks(big)[0]).stat().st_size
        finally:
            for sock in stalled:
                sock.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert_serving(h)


def test_a_request_path_cannot_forge_a_log_line(hostile: Hostile, caplog: pytest.LogCaptureFixture) -> None:
    """The access log writes the decoded path: ``%0A`` would end the line and start a
    fake one, ``%1B`` would send a terminal escape. Both are logged escaped."""
    forged = "2026-12-04 12:00:00,000 INFO    bot.app: recording deleted by admin"

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if "/r/x" in r.getMessage()]

    with caplog.at_level(logging.INFO):
        reply = request(hostile.port, f"/r/x%0A{quote(forged)}%1B%5B2J")
        assert reply.status == 404
        deadline = time.monotonic() + DEADLINE
        while not logged():  # the server logs the request once the response is sent
            assert time.monotonic() < deadline, "the request was not logged"
            time.sleep(0.01)
    (line,) = logged()
    assert "\n" not in line and "\x1b" not in line, line
    assert "/r/x\\n" + forged + "\\x1b[2J" in line, line


def _accepted(port: int) -> int:
    """How many connections to `port` this process has accepted and holds a descriptor
    for. The kernel lists a connection still waiting in the listen backlog too, but
    with no socket inode (0) until it is accepted."""
    held = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("socket:["):
                held.add(int(target[8:-1]))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table, encoding="ascii") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], int(fields[9])
                if local_port == port and state == "01" and inode in held:  # 01: ESTABLISHED
                    count += 1
    return count


def test_connections_over_the_cap_wait_without_a_descriptor(hostile: Hostile) -> None:
    """With HTTP_MAX_CONNECTIONS at 3, three idle connections held open: a fourth is
    not accepted (no descriptor is spent on it) however long it waits; once one of
    the three closes, the fourth is accepted and its request answered."""
    h = hostile
    cap = 3
    server = WebServer(create_app(AsyncRecordingStore(h.store)), "127.0.0.1", 0, idle_timeout=DEADLINE,
                       max_connections=cap)
    with serving(server):
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) for _ in range(cap)]
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        try:
            deadline = time.monotonic() + DEADLINE
            while _accepted(server.port) < cap:
                assert time.monotonic() < deadline, f"only {_accepted(server.port)} connections accepted"
                time.sleep(0.02)
            extra.sendall(f"GET /r/{h.b.id}?key={h.b.secret} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                          .encode())
            # Over the cap: however long we look, the server holds no fourth connection.
            watch_until = time.monotonic() + 2.0
            while time.monotonic() < watch_until:
                assert _accepted(server.port) <= cap, "a connection over the cap was accepted"
                time.sleep(0.02)
            assert server.open_connections == cap
            idle.pop().close()
            response = http.client.HTTPResponse(extra, method="GET")
            response.begin()  # waits (up to DEADLINE) until the freed place lets the server accept it
            assert response.status == 200 and b"<audio " in response.read()
            assert _accepted(server.port) <= cap
        finally:
            extra.close()
            for sock in idle:
                sock.close()
