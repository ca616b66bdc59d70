"""``voice-recorder-bot web``: the standalone download front.

It serves the download pages and files from the recording index and the
recordings folder (and the object store, with ``STORAGE_URL``) alone, with
``/healthz`` (ready when the index and the object store answer) and
``/metrics``: no Discord login, no voice, no token. Several can run behind a
reverse proxy next to (or instead of) the bot processes' own download servers.
This module and everything it imports stay clear of discord.py: a front
process never loads it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from prometheus_client import CollectorRegistry, ProcessCollector

from bot.config import Settings
from bot.storage import AsyncRecordingStore
from bot.stores import Stores
from bot.sweeps import sweep_periodically
from bot.web import WebServer, create_app
from bot.web.ops import add_ops_routes, store_problems
from bot.web.storecheck import ObjectStoreCheck

__all__ = ["run_front"]

_log = logging.getLogger(__name__)


async def _serve(settings: Settings, stores: Stores) -> int:
    # A front on another machine serves what the bots uploaded straight from the object store.
    astore = AsyncRecordingStore(stores.index)
    metrics = CollectorRegistry()
    ProcessCollector(registry=metrics)
    app = create_app(astore, metrics=metrics, objects=stores.objects)
    objects_check = ObjectStoreCheck(stores.objects) if stores.objects is not None else None
    add_ops_routes(app, readiness=lambda: store_problems(astore, objects_check), metrics=metrics)
    server = WebServer(app, settings.http_host, settings.http_port, max_connections=settings.http_max_connections)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # Copies of stored recordings fetched for pages and derived formats; nothing else of a
    # front's folder ever goes, so without this they would outlive their recordings.
    await astore.sweep_cache()
    sweeper = asyncio.create_task(sweep_periodically(astore.sweep_cache, "cache sweep"), name="cache sweep")
    try:
        await server.start()
        _log.info("download front ready; no Discord connection is made (links start with %s)", settings.public_url)
        await stopping.wait()
        _log.info("download front shutting down")
    finally:
        sweeper.cancel()
        await server.stop()
    return 0


def run_front(settings: Settings, stores: Stores) -> int:
    """Serve downloads from ``stores`` (the caller closes them) until SIGTERM or SIGINT;
    the exit code (errors: one line on stderr)."""
    try:
        return asyncio.run(_serve(settings, stores))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
