"""The object store's readiness check against moto's S3 server: however many ask at once
or in a row, the store gets one request per interval; a store that accepts connections
and never answers is reported within the timeout, not after the client's minute."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bot.objects import ObjectStore, StorageSettings
from bot.web.storecheck import ObjectStoreCheck
from tests.s3server import S3Server, s3_server, s3_settings  # noqa: F401 - fixtures
from tests.tcprelay import Relay


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[Relay]:
    relay = Relay(int(re.search(r":(\d+)$", s3_server.endpoint).group(1)))
    yield relay
    relay.close()


def _via(settings: StorageSettings, port: int) -> ObjectStore:
    return ObjectStore(dataclasses.replace(settings, endpoint=f"http://127.0.0.1:{port}"))


def test_a_storm_of_checks_costs_the_store_one_request_per_interval(
        s3_settings: StorageSettings, relay: Relay) -> None:
    check = ObjectStoreCheck(_via(s3_settings, relay.port), cache_seconds=1.0)

    async def scenario() -> None:
        assert await check.problems() == []
        one_request = relay.forwarded
        assert one_request > 0
        # Within the interval: fifty at once and fifty in a row send nothing.
        answers = await asyncio.gather(*(check.problems() for _ in range(50)))
        answers += [await check.problems() for _ in range(50)]
        assert answers == [[]] * 100 and relay.forwarded == one_request
        await asyncio.sleep(1.1)
        # After it: fifty at once share one new request.
        assert await asyncio.gather(*(check.problems() for _ in range(50))) == [[]] * 50
        assert one_request < relay.forwarded < 2.5 * one_request

        relay.cut_after(0)
        await asyncio.sleep(1.1)
        assert await check.problems() == ["object store: unreachable (connection closed)"]
        relay.restore()
        assert await check.problems() == ["object store: unreachable (connection closed)"]  # cached
        await asyncio.sleep(1.1)
        assert await check.problems() == []

    asyncio.run(scenario())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers on them (a hung store)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    for conn in held:
        conn.close()


def test_a_store_that_never_answers_is_reported_within_the_timeout(
        s3_settings: StorageSettings, silent_port: int) -> None:
    check = ObjectStoreCheck(_via(s3_settings, silent_port), timeout=1.0)

    async def scenario() -> tuple[list[str], float]:
        started = time.monotonic()
        problems = await check.problems()
        return problems, time.monotonic() - started

    problems, took = asyncio.run(scenario())
    assert problems == ["object store: unreachable (no answer in time)"]
    assert took < 10.0  # not the client's own read timeout of a minute
