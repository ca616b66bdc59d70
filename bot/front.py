"""``voice-recorder-bot web``: the standalone download front.

It serves the download pages and files from the recording index and the
recordings folder alone, with ``/healthz`` (ready when the index answers) and
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
from bot.objects import ObjectStore
from bot.storage import AsyncRecordingStore, RecordingStore
from bot.web import WebServer, create_app
from bot.web.ops import add_ops_routes, index_problems

__all__ = ["run_front"]

_log = logging.getLogger(__name__)


async def _serve(settings: Settings) -> int:
    # A front on another machine serves what the bots uploaded straight from the object store.
    objects = ObjectStore(settings.storage) if settings.storage is not None else None
    store = RecordingStore(settings.recordings_dir, settings.database_path, settings.retention_days,
                           database_url=settings.database_url)
    astore = AsyncRecordingStore(store)
    metrics = CollectorRegistry()
    ProcessCollector(registry=metrics)
    app = create_app(astore, metrics=metrics, objects=objects)
    add_ops_routes(app, readiness=lambda: index_problems(astore), metrics=metrics)
    server = WebServer(app, settings.http_host, settings.http_port, max_connections=settings.http_max_connections)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await server.start()
        _log.info("download front ready; no Discord connection is made (links start with %s)", settings.public_url)
        await stopping.wait()
        _log.info("download front shutting down")
    finally:
        await server.stop()
        store.close()
    return 0


def run_front(settings: Settings) -> int:
    """Serve downloads until SIGTERM or SIGINT; the exit code (errors: one line on stderr)."""
    try:
        return asyncio.run(_serve(settings))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
