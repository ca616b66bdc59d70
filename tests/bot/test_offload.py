"""The uploader against moto's S3 server behind a relay the test cuts: a failure
outlasting a request's retry budget is counted in the index, the folder stays,
other recordings are not held up, and the upload completes once the store is back."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.objects import ObjectStore, RetryPolicy, StorageSettings
from bot.offload import Offloader
from bot.storage import RecordingStore
from tests.bot.wavgen import bursts, write_wav
from tests.s3server import S3Server, s3_server, s3_settings  # noqa: F401 - fixtures
from tests.tcprelay import Relay

GUILD = 111111111111111111


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[Relay]:
    relay = Relay(int(re.search(r":(\d+)$", s3_server.endpoint).group(1)))
    yield relay
    relay.close()


def _finished(store: RecordingStore) -> str:
    rec = store.create(GUILD, "G", 1, "vc")
    write_wav(rec.directory / "4444.wav", bursts(300.0, 0.5, [(0, 0.5)]))
    store.note_speaker(rec.id, 4444, "Dee")
    store.finish(rec.id, store.new_manifest(rec))
    return rec.id


async def _until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_a_failed_upload_is_counted_retried_and_completes_once_the_store_is_back(
        tmp_path: Path, s3_server: S3Server, s3_settings: StorageSettings, relay: Relay) -> None:
    cut_off = ObjectStore(dataclasses.replace(s3_settings, endpoint=f"http://127.0.0.1:{relay.port}"),
                          retry=RetryPolicy(budget=0.5, first_delay=0.05, max_delay=0.1))
    store = RecordingStore(tmp_path / "r")
    first = _finished(store)
    folder = store.require(first).directory
    relay.cut_after(0)

    async def scenario() -> None:
        offloader = Offloader(store, cut_off, keep_local=False, first_retry=0.2, max_retry=0.5)
        offloader.start()
        try:
            await _until(lambda: store.upload_failures(first)[0] >= 2, "two failed uploads counted")
            failing = offloader.stats()
            assert (failing.pending, failing.uploaded, failing.bytes_sent) == (1, 0, 0)
            assert failing.failures["store_unavailable"] >= 2 and sum(failing.failures.values()) == \
                failing.failures["store_unavailable"]
            _attempts, reason = store.upload_failures(first)
            assert reason is not None and "\n" not in reason and s3_server.secret_key not in reason
            assert folder.is_dir() and store.require(first).stored_prefix is None
            relay.restore()
            second = await asyncio.to_thread(_finished, store)  # found through the store's close listener
            await _until(lambda: all(store.require(r).local_removed for r in (first, second)), "both uploaded")
            await _until(lambda: offloader.stats().pending == 0, "nothing pending")
            done = offloader.stats()
            assert done.uploaded == 2 and sum(done.failures.values()) == done.failures["store_unavailable"]
            assert done.bytes_sent > sum(o.size for o in cut_off.list() if o.name.endswith(".wav"))
            assert not folder.exists()
            assert store.upload_failures(first)[1] is None  # the reason goes with the verified upload
            names = {o.name for o in cut_off.list(f"{first}/")}
            assert names == {f"{first}/{n}" for n in ("dee-4444.wav", "activity.json", "manifest.json")}
        finally:
            await offloader.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
