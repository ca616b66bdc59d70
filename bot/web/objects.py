"""A download served from the object store, with the Range rules of the local
files (:func:`bot.web.ranges.byte_range`): 206 and ``Content-Range`` for one
satisfiable range, 200 and the whole object otherwise (no Range, a unit other
than bytes, several ranges, an If-Range that no longer holds), 416 and
``Content-Range: bytes */<size>`` for an unsatisfiable one.

The bytes stream through this server (:func:`bot.web.streaming.stream_chunks`)
rather than by a redirect to a presigned URL: the page keeps one origin for its
strict CSP (``media-src 'self'``), the download key is checked here on every
request, and a store on a private network (MinIO beside the bot) still serves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from bot.objects import ObjectMissing, ObjectStoreError
from bot.web.ranges import Unsatisfiable, byte_range
from bot.web.streaming import SEND_TIMEOUT, stream_chunks

if TYPE_CHECKING:
    from bot.objects import ObjectInfo, ObjectStore

__all__ = ["STORE_UNAVAILABLE_BODY", "object_response"]

_log = logging.getLogger(__name__)

#: What a visitor reads when the store does not answer (the page still works; the download does not, now).
STORE_UNAVAILABLE_BODY = "The recording's storage is not answering right now; try again in a minute.\n"


def _unavailable() -> web.Response:
    return web.Response(status=503, text=STORE_UNAVAILABLE_BODY, content_type="text/plain",
                        headers={"Retry-After": "60", "Cache-Control": "no-store"})


def _if_range_holds(value: str, info: ObjectInfo) -> bool:
    """RFC 9110 13.1.5: the representation is unchanged since the client's copy
    (a strong ETag equal to ours, or a date no earlier than the last change)."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == f'"{info.etag}"'  # a weak tag never matches here
    try:
        since = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    modified: datetime = info.last_modified
    return since.tzinfo is not None and modified.replace(microsecond=0) <= since


def _decide(request: web.BaseRequest, info: ObjectInfo) -> tuple[int, int] | Unsatisfiable | None:
    header = request.headers.get(hdrs.RANGE)
    if header is None:
        return None
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and not _if_range_holds(if_range, info):
        return None
    try:
        return byte_range(header, info.size)
    except ValueError:  # digit strings past int()'s limit are invalid ranges
        return Unsatisfiable.RANGE


async def object_response(
    request: web.BaseRequest, store: ObjectStore, name: str, *, headers: Mapping[str, str] | None = None,
    executor: Executor | None = None, send_timeout: float = SEND_TIMEOUT,
) -> web.StreamResponse:
    """Answer ``request`` with the object ``name`` (or the byte range it asks for),
    adding ``headers`` (Content-Type, Cache-Control, Content-Disposition). The
    store's blocking calls run on ``executor``. Raises :class:`ObjectMissing`
    when there is no such object (the caller answers its uniform 404); a store
    that does not answer gets 503 and one line."""
    loop = asyncio.get_running_loop()
    try:
        info = await loop.run_in_executor(executor, store.stat, name)
    except ObjectStoreError as exc:
        _log.warning("download of %s: %s", name, exc)
        return _unavailable()
    if info is None:
        raise ObjectMissing(f"download {name}: no such object")
    decided = _decide(request, info)
    response = web.StreamResponse(headers=headers)
    if decided is Unsatisfiable.RANGE:
        response.set_status(416)
        response.headers[hdrs.CONTENT_RANGE] = f"bytes */{info.size}"
        await response.prepare(request)
        await response.write_eof()
        return response
    response.etag = info.etag
    response.last_modified = info.last_modified
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    first, last = decided if decided is not None else (0, info.size - 1)
    if decided is not None:
        response.set_status(206)
        response.headers[hdrs.CONTENT_RANGE] = f"bytes {first}-{last}/{info.size}"
    response.content_length = last - first + 1
    if request.method == hdrs.METH_HEAD or info.size == 0:
        await response.prepare(request)
        await response.write_eof()
        return response
    try:
        # If-Match: an object replaced since the stat is not spliced into this answer.
        opened = await loop.run_in_executor(
            executor, functools.partial(store.open_range, name, first, last, if_match=info.etag))
    except ObjectMissing:
        raise
    except ObjectStoreError as exc:
        _log.warning("download of %s: %s", name, exc)
        return _unavailable()
    try:
        await response.prepare(request)
        await stream_chunks(request, response, opened.chunks(), executor, send_timeout=send_timeout)
    except ObjectStoreError as exc:
        # The status line is gone already: cutting the connection is how the client learns.
        _log.warning("download of %s broke off: %s", name, exc)
        if request.transport is not None:
            request.transport.abort()
    finally:
        opened.close()
    return response
