"""Serving a stored object to a browser: the same Range answers as a local track
(tests compare the two routes of one real aiohttp app, byte for byte and
header for header), If-Range, HEAD, and a 404 for a missing object."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from bot.objects import ObjectMissing, ObjectStore, RetryPolicy, StorageSettings, fingerprint
from bot.web.objects import STORE_UNAVAILABLE_BODY, object_response
from bot.web.ranges import RangedFileResponse
from tests.bot.wavgen import tone, write_wav
from tests.s3server import S3Server
from tests.tcprelay import Relay

Scenario = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


def _serve(store: ObjectStore, folder: Path, scenario: Scenario) -> None:
    """Run ``scenario(client, base_url)`` against an app with ``/local/<name>``
    (the track route's response class) and ``/object/<name>`` (the store)."""

    async def local(request: web.Request) -> web.StreamResponse:
        return RangedFileResponse(folder / request.match_info["name"], headers={"Content-Type": "audio/wav"})

    async def stored(request: web.Request) -> web.StreamResponse:
        try:
            return await object_response(request, store, request.match_info["name"],
                                         headers={"Content-Type": "audio/wav"})
        except ObjectMissing:
            return web.Response(status=404, text="Not found.\n")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/local/{name}", local)
        app.router.add_get("/object/{name}", stored)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as client:
                await scenario(client, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    asyncio.run(main())


@pytest.fixture
def served(s3_settings: StorageSettings, tmp_path: Path) -> tuple[ObjectStore, Path, bytes]:
    """A 3 s real WAV track, on disk and in the store under the same name."""
    path = write_wav(tmp_path / "alice-1000.wav", tone(440.0, 3.0))
    store = ObjectStore(s3_settings)
    store.upload(path, path.name, fingerprint(path, None))
    return store, tmp_path, path.read_bytes()


_COMPARED = ("Content-Range", "Content-Length", "Accept-Ranges", "Content-Type")


def test_range_answers_match_the_local_track(served: tuple[ObjectStore, Path, bytes]) -> None:
    store, folder, data = served
    size = len(data)
    ranges = [None, "bytes=0-0", f"bytes={size - 1}-{size - 1}", "bytes=-1", "bytes=-500", "bytes=100-",
              "bytes=0-", f"bytes=1000-{size + 5000}", f"bytes=-{size + 10}",
              f"bytes={size}-", "bytes=-0", "bytes=5-2", "bytes=abc", "bytes=0-1,5-6", "items=0-1", "bytes=" + "9" * 5000]
    seen: dict[str | None, int] = {}

    async def scenario(client: aiohttp.ClientSession, base: str) -> None:
        for header in ranges:
            headers = {"Range": header} if header is not None else {}
            async with client.get(f"{base}/local/alice-1000.wav", headers=headers) as local:
                want = (local.status, {h: local.headers.get(h) for h in _COMPARED}, await local.read())
            async with client.get(f"{base}/object/alice-1000.wav", headers=headers) as got:
                have = (got.status, {h: got.headers.get(h) for h in _COMPARED}, await got.read())
            assert have == want, header
            seen[header] = have[0]

    _serve(store, folder, scenario)
    # The cases that matter to a seeking player, as the object route answered them:
    assert seen[None] == 200 and seen["bytes=0-0"] == 206 and seen[f"bytes={size - 1}-{size - 1}"] == 206
    assert seen["bytes=-500"] == 206 and seen[f"bytes={size}-"] == 416 and seen["bytes=0-1,5-6"] == 200


def test_exact_bytes_of_a_suffix_and_a_middle_range(served: tuple[ObjectStore, Path, bytes]) -> None:
    store, folder, data = served

    async def scenario(client: aiohttp.ClientSession, base: str) -> None:
        async with client.get(f"{base}/object/alice-1000.wav", headers={"Range": "bytes=-44"}) as got:
            assert got.status == 206 and await got.read() == data[-44:]
            assert got.headers["Content-Range"] == f"bytes {len(data) - 44}-{len(data) - 1}/{len(data)}"
        async with client.get(f"{base}/object/alice-1000.wav", headers={"Range": "bytes=44-143"}) as got:
            assert got.status == 206 and await got.read() == data[44:144]
        async with client.get(f"{base}/object/alice-1000.wav", headers={"Range": f"bytes={len(data)}-"}) as got:
            assert got.status == 416 and got.headers["Content-Range"] == f"bytes */{len(data)}"
            assert await got.read() == b""

    _serve(store, folder, scenario)


def test_if_range_head_and_missing(served: tuple[ObjectStore, Path, bytes]) -> None:
    store, folder, data = served
    info = store.stat("alice-1000.wav")
    assert info is not None

    async def scenario(client: aiohttp.ClientSession, base: str) -> None:
        url = f"{base}/object/alice-1000.wav"
        async with client.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{info.etag}"'}) as got:
            assert got.status == 206 and await got.read() == data[:10]
        async with client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another-version"'}) as got:
            assert got.status == 200 and await got.read() == data  # changed since: the whole new object
        long_ago = format_datetime(info.last_modified.replace(year=2020).astimezone(UTC), usegmt=True)
        async with client.get(url, headers={"Range": "bytes=0-9", "If-Range": long_ago}) as got:
            assert got.status == 200 and await got.read() == data
        async with client.head(url, headers={"Range": "bytes=0-9"}) as got:
            assert got.status == 206 and got.headers["Content-Length"] == "10" and await got.read() == b""
            assert got.headers["ETag"] == f'"{info.etag}"'
        async with client.get(f"{base}/object/nobody.wav") as got:
            assert got.status == 404

    _serve(store, folder, scenario)


def test_a_store_that_does_not_answer_gets_503_and_one_line(s3_settings: StorageSettings, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gone = StorageSettings(s3_settings.bucket, s3_settings.prefix, f"http://127.0.0.1:{closed}", s3_settings.region)
    store = ObjectStore(gone, retry=RetryPolicy(budget=0.5, first_delay=0.1, max_delay=0.2))

    async def scenario(client: aiohttp.ClientSession, base: str) -> None:
        async with client.get(f"{base}/object/alice-1000.wav", headers={"Range": "bytes=0-9"}) as got:
            assert got.status == 503 and got.headers["Content-Type"].startswith("text/plain")
            assert await got.text() == STORE_UNAVAILABLE_BODY

    _serve(store, tmp_path, scenario)


def test_a_download_cut_off_midway_is_never_a_short_complete_file(served: tuple[ObjectStore, Path, bytes],
                                                                  s3_server: S3Server) -> None:
    store, folder, data = served
    relay = Relay(urlsplit(s3_server.endpoint).port or 0)
    try:
        settings = store.settings
        through_relay = ObjectStore(StorageSettings(settings.bucket, settings.prefix,
                                                    f"http://127.0.0.1:{relay.port}", settings.region),
                                    retry=RetryPolicy(budget=0.5, first_delay=0.1, max_delay=0.2))

        async def scenario(client: aiohttp.ClientSession, base: str) -> None:
            # The store's answer to the stat gets through, its bytes stop 100 kB into the GET.
            relay.cut_after(len(data) // 3, towards_server=False)
            async with client.get(f"{base}/object/alice-1000.wav") as got:
                assert got.status == 200 and got.headers["Content-Length"] == str(len(data))
                with pytest.raises(aiohttp.ClientPayloadError):
                    await got.read()

        _serve(through_relay, folder, scenario)
        assert relay.down
    finally:
        relay.close()
