"""One socket reader thread for every voice connection of the process.

discord.py 2.7.1 gives each voice connection a ``SocketReader`` thread. In a
bot recording many guilds those threads, each with its sink worker, contend
for the GIL: 200 speakers cost 76 % of a core over one connection and 118 %
over four, the readers alone 24 % and 52 % (``python -m tests.bench load``).
:class:`SharedSocketReader` keeps discord.py's reader contract per connection
(register/unregister, pause/resume, stop; every callback sees every datagram;
a callback's exception is logged; the connection's current socket is read, so
a reconnect's new socket is picked up) while one :class:`_ReaderHub` thread
selects over all of them. It reads each readable socket until it is empty at
once, without pausing, so arrival times stay those of the datagrams.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from typing import Any, Final

from discord.voice_state import SocketReader

__all__ = ("SharedSocketReader",)

_log = logging.getLogger(__name__)

#: Datagrams read from one socket before the others get their turn.
_MAX_BATCH: Final = 64
_RECV_SIZE: Final = 2048
#: select() timeout: the hub also wakes through its pipe on every change.
_IDLE_WAIT: Final = 30.0


class _ReaderHub:
    """The thread that reads the sockets of every running :class:`SharedSocketReader`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: list[SharedSocketReader] = []
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._thread: threading.Thread | None = None

    def add(self, reader: SharedSocketReader) -> None:
        """Start reading for `reader` (and the thread, the first time)."""
        with self._lock:
            self._readers.append(reader)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="voice-socket-reader:shared", daemon=True)
                self._thread.start()
        self.changed()

    def remove(self, reader: SharedSocketReader) -> None:
        """Never read for `reader` again."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._readers.remove(reader)
        self.changed()

    def changed(self) -> None:
        """Make the thread look at the readers and their sockets again."""
        with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
            self._wake_send.send(b"\0")

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _sockets(self) -> dict[int, tuple[socket.socket, SharedSocketReader]]:
        with self._lock:
            readers = list(self._readers)
        ready = {}
        for reader in readers:
            sock = reader.socket_to_read()
            if sock is not None:
                ready[sock.fileno()] = (sock, reader)
        return ready

    def _run(self) -> None:
        while True:
            ready = self._sockets()
            try:
                readable, _, _ = select.select([self._wake_recv.fileno(), *ready], [], [], _IDLE_WAIT)
            except (ValueError, OSError) as exc:
                # A socket was closed after it was listed (a reconnect): list them again.
                _log.debug("select on the voice sockets failed, safe to ignore: %r", exc)
                continue
            for fd in readable:
                if fd == self._wake_recv.fileno():
                    with contextlib.suppress(BlockingIOError):
                        self._wake_recv.recv(4096)
                    continue
                sock, reader = ready[fd]
                reader.drain(sock)


_hub = _ReaderHub()


class SharedSocketReader(SocketReader):
    """discord.py's ``SocketReader`` interface, read by the process's shared thread.

    It is a ``Thread`` only by inheritance (discord.py's type): it is never started.
    """

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self._stopped = False
        # As discord.py's reader once started: paused until resume(), whatever registers.
        super().pause()
        _hub.add(self)

    def socket_to_read(self) -> socket.socket | None:
        """The connection's socket while reading is on, else None."""
        sock = self.state.socket
        if self._stopped or not self._running.is_set() or not isinstance(sock, socket.socket):
            return None
        return sock if sock.fileno() >= 0 else None

    def drain(self, sock: socket.socket) -> None:
        """Hand every queued datagram of `sock` (at most :data:`_MAX_BATCH`) to the callbacks."""
        for _ in range(_MAX_BATCH):
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                _log.debug("error reading from the voice socket, safe to ignore", exc_info=True)
                return
            for callback in self._callbacks:
                try:
                    callback(data)
                except Exception:
                    _log.exception("error calling %s in %s", callback, self)
            if not data:
                return  # shut down on close (see client._WakingSocket): the next round drops it

    def register(self, callback: Any) -> None:
        super().register(callback)
        _hub.changed()

    def unregister(self, callback: Any) -> None:
        super().unregister(callback)
        _hub.changed()

    def pause(self) -> None:
        super().pause()
        _hub.changed()

    def resume(self, *, force: bool = False) -> None:
        super().resume(force=force)
        _hub.changed()

    def stop(self) -> None:
        self._stopped = True
        self._callbacks.clear()
        _hub.remove(self)

    def start(self) -> None:
        """Nothing to start: the shared thread reads (see the class)."""

    def is_alive(self) -> bool:
        """Whether this connection is still read: not stopped, and the shared thread runs."""
        return not self._stopped and _hub.alive()
