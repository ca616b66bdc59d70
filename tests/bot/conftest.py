"""A real download server on 127.0.0.1 (its own event loop in a thread) over a
store holding recordings of distinct tones."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from bot.storage import AsyncRecordingStore, Recording, RecordingStore
from bot.web import WebServer, create_app
from tests.bot.wavgen import RATE, bursts, write_wav

# (user id, display name, tone Hz, seconds, spans with sound); names try to break the HTML.
SPEAKERS = (
    (1111, "Alice <script>alert('x')</script>", 440.0, 3.0, [(0.2, 1.2)]),
    (2222, 'Bob "&" <b>Bold</b>', 660.0, 3.0, [(1.0, 2.0), (2.5, 2.9)]),
    (3333, "Zoë 日本", 880.0, 2.5, [(0.0, 0.6), (1.5, 2.5)]),
)


@dataclasses.dataclass
class Site:
    """The running server and what it serves."""

    base: str
    store: RecordingStore
    rec: Recording
    other: Recording
    running: Recording
    expired: Recording
    samples: dict[int, np.ndarray]

    def url(self, path: str, key: str | None = "") -> str:
        key = self.rec.secret if key == "" else key
        return self.base + path + ("" if key is None else f"?key={key}")

    def track(self, user_id: int) -> Path:
        (path,) = self.rec.directory.glob(f"*-{user_id}.wav")
        return path


def _create(store: RecordingStore, guild: int, started: datetime | None = None) -> Recording:
    return store.create(guild, "Guild <i>", 77, "general & co", started_at=started)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web") / "recordings"
    store = RecordingStore(root, retention_days=30)
    rec = _create(store, 1)
    samples = {}
    for uid, name, freq, seconds, spans in SPEAKERS:
        # Loud enough that the mixdown has to clip where tones overlap.
        samples[uid] = bursts(freq, seconds, spans, amplitude=0.7)
        write_wav(rec.directory / f"{uid}.wav", samples[uid])
        store.note_speaker(rec.id, uid, name)
    store.finish(rec.id, store.new_manifest(rec))
    other = _create(store, 2)
    write_wav(other.directory / "4444.wav", bursts(300.0, 1.0, [(0, 1)]))
    store.finish(other.id, store.new_manifest(other))
    running = store.create(1, "G", 77, "vc")
    write_wav(running.directory / "5555.wav", bursts(300.0, 1.0, [(0, 1)]))
    expired = _create(store, 1, datetime.now(UTC) - timedelta(days=31))
    write_wav(expired.directory / "6666.wav", bursts(300.0, 1.0, [(0, 1)]))
    # Retention counts from the end: this one ended a minute after it began, 31 days ago.
    store.finish(expired.id, store.new_manifest(expired), ended_at=expired.started_at + timedelta(minutes=1))

    try:
        with serving(WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)) as server:
            yield Site(f"http://127.0.0.1:{server.port}", store, store.get(rec.id), other, running, expired, samples)
    finally:
        store.close()


@dataclasses.dataclass(frozen=True)
class IndexUnderTest:
    """One of the index's backends, for tests that every backend must pass."""

    #: "sqlite" or "postgresql".
    kind: str
    #: The PostgreSQL database, fresh for the test; None for SQLite.
    url: str | None

    def open(self, recordings_dir: Path, database_path: Path | None = None,
             retention_days: float | None = 30.0) -> RecordingStore:
        """A store over this backend; opened again, it finds what the last one wrote."""
        return RecordingStore(recordings_dir, database_path, retention_days, database_url=self.url)

    def execute(self, store: RecordingStore, sql: str, params: tuple[object, ...] = ()) -> None:
        """Run ``sql`` (``?`` placeholders) on the store's database behind its back, as another process would."""
        if self.url is None:
            assert store.database_path is not None
            with contextlib.closing(sqlite3.connect(store.database_path)) as db, db:
                db.execute(sql, params)
        else:
            with psycopg.connect(self.url, autocommit=True) as db:
                db.execute(sql.replace("?", "%s"), params)


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest) -> IndexUnderTest:
    """Each backend in turn; the PostgreSQL one on a fresh database of the session's server."""
    if request.param == "sqlite":
        return IndexUnderTest("sqlite", None)
    return IndexUnderTest("postgresql", request.getfixturevalue("postgres_url"))


@contextlib.contextmanager
def serving(server: WebServer) -> Iterator[WebServer]:
    """Run `server` on an event loop of its own thread until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-web", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


__all__ = ["RATE", "SPEAKERS", "IndexUnderTest", "Site", "serving"]
