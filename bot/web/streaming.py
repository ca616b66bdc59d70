"""Feed an aiohttp response from a blocking producer running in a thread.

The producer gets a ``write(bytes)`` that hands each chunk to the event loop and
waits until the response accepted it, so a slow client slows the producer down
(nothing piles up in memory) and a vanished client stops it with an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from aiohttp import web

__all__ = ["stream_from_thread"]

_log = logging.getLogger(__name__)


async def stream_from_thread(
    response: web.StreamResponse,
    producer: Callable[[Callable[[bytes], None]], None],
    executor: Executor | None = None,
) -> bool:
    """Run ``producer(write)`` in ``executor`` and send what it writes through the
    prepared ``response``. Returns False when the client went away."""
    loop = asyncio.get_running_loop()

    def write(chunk: bytes) -> None:
        asyncio.run_coroutine_threadsafe(response.write(chunk), loop).result()

    try:
        await loop.run_in_executor(executor, producer, write)
    except ConnectionError as exc:
        _log.debug("download stopped: %s", exc)
        return False
    await response.write_eof()
    return True
