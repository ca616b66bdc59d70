"""A discord.py client running on its own loop thread, pointed at a FakeDiscord
only through discord.py's public knobs (Route.BASE, DEFAULT_GATEWAY, connector)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
from typing import Awaitable, Callable, TypeVar

import aiohttp
import discord

T = TypeVar("T")


def trusting_connector(ca_file: str) -> aiohttp.TCPConnector:
    """A connector trusting the fake's test CA (create it on the client's loop)."""
    return aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca_file))


class ClientThread:
    """Runs `factory()` (which builds a discord.Client) on a private loop thread and
    starts it with `token`; `ready` is set on READY, `error` holds a start failure."""

    def __init__(self, factory: Callable[[], discord.Client], token: str) -> None:
        self._factory = factory
        self._token = token
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.client: discord.Client | None = None
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="discord-client", daemon=True)

    def start(self, timeout: float = 20.0) -> discord.Client:
        """Start and wait for READY (raises what the client raised, if it failed)."""
        self._thread.start()
        self.call(self._launch())
        deadline_ok = self.ready.wait(timeout)
        if self.error is not None:
            raise self.error
        if not deadline_ok:
            raise TimeoutError("discord.py client did not get READY")
        assert self.client is not None
        return self.client

    async def _launch(self) -> None:
        self.client = self._factory()

        @self.client.event
        async def on_ready() -> None:
            self.ready.set()

        async def run() -> None:
            try:
                await self.client.start(self._token)  # type: ignore[union-attr]
            except BaseException as exc:  # handed to the test thread
                self.error = exc
                self.ready.set()
        self._task = self.loop.create_task(run())

    def call(self, what: Awaitable[T], timeout: float = 20.0) -> T:
        """Run a coroutine on the client's loop and return its result."""
        return self.submit(what).result(timeout)

    def submit(self, what: Awaitable[T]) -> "concurrent.futures.Future[T]":
        """Start a coroutine on the client's loop; return its future."""
        return asyncio.run_coroutine_threadsafe(what, self.loop)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the client and stop the thread."""
        if self.client is not None and self._thread.is_alive():
            self.call(self.client.close())
            if self._task is not None:
                self.call(asyncio.wait([self._task], timeout=5))
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.loop.close()
