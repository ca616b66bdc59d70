"""Run the download app on a TCP port next to the bot, in the bot's event loop."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from bot.logsetup import printable

__all__ = ["IDLE_TIMEOUT", "WebServer"]

_log = logging.getLogger(__name__)

#: Seconds a connection may go without a complete request line and headers,
#: before its first request and between keep-alive requests. aiohttp's default
#: is an hour, which lets a slowloris client (a header byte every few seconds)
#: hold a socket and a file descriptor for that long.
IDLE_TIMEOUT = 20.0


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs every malformed request at ERROR with a traceback whose text
    quotes the request line, download key included. Keep one line at INFO that
    names the error; real handler failures keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed request from %s refused: %s", (remote, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


_http_log = logging.getLogger(__name__ + ".http")
_http_log.addFilter(_OneLineBadRequests())


class _AccessLogger(AbstractAccessLogger):
    """Method, path and status only: the query string holds the download key. The
    path is the client's text, decoded (``%0A`` is a newline): logged escaped."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.3fs", request.remote, request.method, printable(request.path),
                         response.status, time)


class WebServer:
    """Start and stop an aiohttp application on ``host:port`` (port 0: any free one).

    A connection that has not delivered a complete request within
    ``idle_timeout`` seconds (after connecting, or after its previous response)
    is closed; requests being answered are not affected.
    """

    __slots__ = ("app", "host", "idle_timeout", "_port", "_runner")

    def __init__(self, app: web.Application, host: str, port: int, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.app = app
        self.host = host
        self.idle_timeout = idle_timeout
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (known after :meth:`start`)."""
        return self._port

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address is taken."""
        runner = web.AppRunner(
            self.app, access_log_class=_AccessLogger, handle_signals=False,
            keepalive_timeout=self.idle_timeout, logger=_http_log,
        )
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
