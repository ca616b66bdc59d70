"""Run the download app on a TCP port next to the bot, in the bot's event loop."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["WebServer"]

_log = logging.getLogger(__name__)


class _AccessLogger(AbstractAccessLogger):
    """Method, path and status only: the query string holds the download key."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.3fs", request.remote, request.method, request.path, response.status, time)


class WebServer:
    """Start and stop an aiohttp application on ``host:port`` (port 0: any free one)."""

    __slots__ = ("app", "host", "_port", "_runner")

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (known after :meth:`start`)."""
        return self._port

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address is taken."""
        runner = web.AppRunner(self.app, access_log_class=_AccessLogger, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        _log.info("download server listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Close the listening socket and open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
