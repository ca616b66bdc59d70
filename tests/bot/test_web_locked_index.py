"""The download server while another process holds the SQLite index.

A store write that meets the lock waits out SQLite's busy timeout while
holding the store's own lock; a handler that reads the store on the event
loop then froze the loop, and with it the whole bot, for those seconds.
"""

from __future__ import annotations

import http.client
import sqlite3
import threading
import time
from pathlib import Path

from bot.storage import AsyncRecordingStore, RecordingStore
from bot.web import WebServer, create_app
from tests.bot.conftest import serving
from tests.bot.wavgen import bursts, write_wav

#: How long a request that needs no store may take while the index is locked.
PROMPT = 2.0


def _status(port: int, path: str) -> tuple[int, float]:
    """GET `path`; the status and the seconds it took."""
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - began
    finally:
        conn.close()


def test_a_locked_index_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "recordings")
    done = store.create(1, "G", 77, "vc")
    write_wav(done.directory / "4444.wav", bursts(300.0, 1.0, [(0, 1)]))
    store.finish(done.id, store.new_manifest(done))
    stopping = store.create(1, "G", 77, "vc")
    page = f"/r/{done.id}?key={done.secret}"
    try:
        with serving(WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)) as server:
            locker = sqlite3.connect(store.database_path, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            failed: list[BaseException] = []

            def finish() -> None:  # meets the lock and waits, holding the store's own lock
                try:
                    store.finish(stopping.id, store.new_manifest(stopping))
                except sqlite3.OperationalError as exc:
                    failed.append(exc)

            writer = threading.Thread(target=finish)
            writer.start()
            time.sleep(0.3)
            page_result: list[tuple[int, float]] = []
            reader = threading.Thread(target=lambda: page_result.append(_status(server.port, page)))
            reader.start()
            time.sleep(0.3)
            # Needs no store: only a frozen loop would keep it waiting.
            status, took = _status(server.port, "/no-such-page")
            waiting = writer.is_alive()
            locker.close()  # the other process lets go: the write and the page go through
            writer.join(timeout=30)
            reader.join(timeout=30)
    finally:
        store.close()
    assert status == 404 and took < PROMPT, f"the server took {took:.1f} s for a 404 while the index was locked"
    assert waiting, "the store write did not meet the lock"
    assert not failed, failed
    assert page_result and page_result[0][0] == 200, page_result
