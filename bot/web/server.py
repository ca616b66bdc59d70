"""Run the download app on a TCP port next to the bot, in the bot's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from bot.logsetup import printable

__all__ = ["IDLE_TIMEOUT", "MAX_CONNECTIONS", "WebServer"]

_log = logging.getLogger(__name__)

#: Seconds a connection may go without a complete request line and headers,
#: before its first request and between keep-alive requests. aiohttp's default
#: is an hour, which lets a slowloris client (a header byte every few seconds)
#: hold a socket and a file descriptor for that long.
IDLE_TIMEOUT = 20.0
#: Connections open at once (HTTP_MAX_CONNECTIONS's default). Each holds a file
#: descriptor; unbounded, a crowd of downloads (or idle sockets) could take the
#: ones the voice connections need.
MAX_CONNECTIONS = 256
#: Pending connections the kernel queues, without a descriptor of ours, while all are taken.
_BACKLOG = 128
#: Seconds to wait before accepting again when the process is out of descriptors.
_ACCEPT_RETRY = 0.5


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


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, reporting when the connection is gone.

    Every transport callback is handed on as it is; only ``connection_lost``
    also calls `on_lost`, which frees the connection's place.
    """

    __slots__ = ("_inner", "_on_lost")

    def __init__(self, inner: asyncio.Protocol, on_lost: Callable[[], None]) -> None:
        self._inner = inner
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._on_lost()


class WebServer:
    """Start and stop an aiohttp application on ``host:port`` (port 0: any free one).

    A connection that has not delivered a complete request within
    ``idle_timeout`` seconds (after connecting, or after its previous response)
    is closed; requests being answered are not affected.

    At most ``max_connections`` connections are open at once. The server
    accepts connections itself, and only while below that: more wait in the
    kernel's listen backlog, holding no descriptor of this process, until one
    closes (then they are served in turn).
    """

    __slots__ = ("app", "host", "idle_timeout", "max_connections", "_port", "_runner", "_listener", "_accepting",
                 "_open", "_freed")

    def __init__(self, app: web.Application, host: str, port: int, *, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.app = app
        self.host = host
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._port = port
        self._runner: web.AppRunner | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._open = 0
        self._freed: asyncio.Event | None = None

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        return self._open

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
        try:
            listener = _listen(self.host, self._port)
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._freed = asyncio.Event()
        self._accepting = asyncio.get_running_loop().create_task(self._accept(listener, runner),
                                                                 name="download server accept")
        _log.info("download server listening on %s:%d (at most %d connections)", self.host, self._port,
                  self.max_connections)

    async def stop(self) -> None:
        """Close the listening socket and open connections."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _lost(self) -> None:
        self._open -= 1
        assert self._freed is not None
        self._freed.set()

    async def _accept(self, listener: socket.socket, runner: web.AppRunner) -> None:
        """Accept connections while fewer than ``max_connections`` are open, and hand
        them to aiohttp; at the cap, accept nothing until one closes."""
        loop = asyncio.get_running_loop()
        freed = self._freed
        assert freed is not None and runner.server is not None
        server = runner.server
        full_logged = False
        while True:
            while self._open >= self.max_connections:
                if not full_logged:
                    _log.warning("download server has %d connections open, its maximum "
                                 "(HTTP_MAX_CONNECTIONS); new ones wait", self._open)
                    full_logged = True
                freed.clear()
                await freed.wait()
            full_logged = False
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    _log.warning("download server cannot accept a connection: %s", exc.strerror)
                    await asyncio.sleep(_ACCEPT_RETRY)
                else:  # the client gave up before it was accepted (ECONNABORTED and the like)
                    _log.debug("accepting a download connection failed: %r", exc)
                continue
            self._open += 1
            try:
                await loop.connect_accepted_socket(lambda: _Counted(server(), self._lost), conn)
            except Exception:
                self._open -= 1
                conn.close()
                _log.exception("could not serve an accepted download connection")


def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on `host` (an address or name) and `port`."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:  # a host name: its first address decides
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    listener = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    listener.setblocking(False)
    return listener
