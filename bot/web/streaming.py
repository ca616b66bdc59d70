"""Send a blocking producer's chunks through an aiohttp response without a
thread waiting on the client.

The producer is a generator of byte chunks that reads files: each ``next()``
runs in the executor, each send happens on the event loop. A thread is busy
only while a chunk is being made, so clients that read slowly or not at all
cannot occupy the export pool (when the pool's threads waited on the client,
four downloads that never read blocked every ZIP, mixdown, FLAC and first page
view for as long as they stayed connected). A client that accepts nothing
for ``send_timeout`` seconds is disconnected, which closes the producer's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator
from concurrent.futures import Executor

from aiohttp import web

__all__ = ["SEND_TIMEOUT", "stream_chunks"]

_log = logging.getLogger(__name__)

#: Seconds one chunk may wait for the client to make room for it (nginx's
#: send_timeout is the same idea and the same default).
SEND_TIMEOUT = 60.0


async def stream_chunks(
    request: web.BaseRequest,
    response: web.StreamResponse,
    chunks: Generator[bytes | bytearray, None, None],
    executor: Executor | None = None,
    *,
    send_timeout: float = SEND_TIMEOUT,
) -> bool:
    """Send every chunk of ``chunks`` through the prepared ``response``, then
    end it. Returns False when the client went away or stalled (its connection
    is then closed)."""
    loop = asyncio.get_running_loop()
    try:
        while (chunk := await loop.run_in_executor(executor, next, chunks, None)) is not None:
            try:
                async with asyncio.timeout(send_timeout):
                    await response.write(chunk)
            except TimeoutError:
                _log.info("download to %s stalled for %.0f s; connection closed", request.remote, send_timeout)
                if request.transport is not None:
                    request.transport.abort()
                return False
    except ConnectionError as exc:
        _log.debug("download stopped: %s", exc)
        return False
    finally:
        # Only a cancelled handler can leave next() running in its thread; the
        # generator is then closed by the garbage collector once it returns.
        with contextlib.suppress(ValueError):
            chunks.close()
    await response.write_eof()
    return True
