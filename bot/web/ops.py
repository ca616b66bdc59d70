"""What operators ask the download server: ``/healthz`` (is this process ready?) and
``/metrics`` (Prometheus), on the download port, for the bot and the standalone
download front alike.

``/healthz`` answers 200 ``{"status": "ready"}`` when every check passes, else 503
``{"status": "not ready", "reasons": [...]}``: what a Docker HEALTHCHECK, a load
balancer or an orchestrator asks. It says nothing private, so anyone may ask.

``/metrics`` is the process's own :class:`~prometheus_client.CollectorRegistry`
in the text format. It is answered only to peers on loopback or a private
network (Prometheus next to the bot, in the same Docker network or LAN); others
get the server's uniform 404. A reverse proxy on the same machine must not
forward it (README says how).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from bot.storage import AsyncRecordingStore
from bot.web.storecheck import ObjectStoreCheck

__all__ = ["INDEX_TIMEOUT", "Readiness", "add_ops_routes", "index_problems", "store_problems"]

_log = logging.getLogger(__name__)

#: Reasons the process is not ready; empty when it is.
Readiness = Callable[[], Awaitable[list[str]]]
#: Seconds the index may take to answer ``SELECT 1`` before it counts as unreachable.
INDEX_TIMEOUT = 5.0


async def index_problems(store: AsyncRecordingStore, timeout: float = INDEX_TIMEOUT) -> list[str]:
    """Why the recording index cannot be used right now (empty: it answered)."""
    try:
        answered = await asyncio.wait_for(store.ping(), timeout)
    except TimeoutError:
        return [f"recording index: no answer within {timeout:g} s"]
    except Exception as exc:  # whatever the backend raises, the process is not ready
        # The answer is public: the error's name only; its text (which may name a host) is logged.
        _log.warning("recording index did not answer: %s", exc)
        return [f"recording index: {type(exc).__name__}"]
    return [] if answered else ["recording index: unreachable"]


async def store_problems(store: AsyncRecordingStore, objects: ObjectStoreCheck | None) -> list[str]:
    """Why the recording index or (when there is one) the object store cannot be used
    right now (empty: both answered); the two are asked at once."""
    checks = [index_problems(store), *([objects.problems()] if objects is not None else [])]
    return [reason for found in await asyncio.gather(*checks) for reason in found]


def _private_peer(request: web.Request) -> bool:
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:  # a Unix socket, or an unknown peer
        return False
    return address.is_private  # loopback, RFC 1918, unique-local and link-local


def add_ops_routes(app: web.Application, *, readiness: Readiness, metrics: CollectorRegistry) -> None:
    """Serve ``/healthz`` from ``readiness`` and ``/metrics`` from ``metrics`` on ``app``."""

    async def healthz(_request: web.Request) -> web.Response:
        reasons = await readiness()
        body = {"status": "not ready", "reasons": reasons} if reasons else {"status": "ready"}
        if reasons:
            _log.debug("not ready: %s", "; ".join(reasons))
        return web.Response(status=503 if reasons else 200, text=json.dumps(body),
                            content_type="application/json", headers={"Cache-Control": "no-store"})

    async def scrape(request: web.Request) -> web.Response:
        if not _private_peer(request):
            raise web.HTTPNotFound
        # The format the scraper asks for (OpenMetrics, or text 0.0.4 by default), as
        # prometheus_client's own server does. On the event loop on purpose: collectors
        # read live state the loop owns, and reading it costs microseconds per recording.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(metrics), headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
