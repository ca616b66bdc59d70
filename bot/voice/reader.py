"""One socket reader thread for every voice connection of the process.

discord.py 2.7.1 gives each voice connection a ``SocketReader`` thread. In a
bot recording many guilds those threads, each with its sink worker, contend
for the GIL: 200 speakers cost 76 % of a core over one connection and 118 %
over four, the readers alone 24 % and 52 % (``python -m tests.bench load``).
:class:`SharedSocketReader` keeps discord.py's reader contract per connection
(register/unregister, pause/resume, stop; every callback sees every datagram;
a callback's exception is logged; the connection's current socket is read, so
a reconnect's new socket is picked up) while one :class:`_ReaderHub` thread
selects over all of them.

Once a socket is readable the hub reads every socket that is, until empty,
then pauses :data:`READ_PAUSE` before it looks again, so datagrams are read
in batches: a thread wake-up, a ``select()`` and a GIL hand-off per batch
instead of per datagram. Each datagram still carries its own arrival time,
the kernel's (:mod:`bot.voice.stamped`; the voice client turns stamping on
as it creates each socket), to callbacks marked with :func:`takes_arrival`;
others get the datagram alone, as in discord.py.
With six connections of 50 speakers, the pause and the GIL kept through
every read took the worker's lag at 300 speakers from failing (sink queue
drops) to under 200 ms (``python -m tests.bench load``).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from .discordpy import SocketReaderBase
from .stamped import StampedReceiver, enable_timestamps

__all__ = ("SharedSocketReader", "takes_arrival", "READ_PAUSE")

_log = logging.getLogger(__name__)

#: Datagrams read from one socket before the others get their turn.
_MAX_BATCH: Final = 256
#: Seconds the hub waits after a batch before it reads again (not the sink
#: worker's ``sinks.worker.BATCH_PAUSE``, a pause of its own). The socket
#: buffers (see client.RECEIVE_BUFFER_BYTES) hold far more than this much.
READ_PAUSE: Final = 0.003
_RECV_SIZE: Final = 2048
#: select() timeout: the hub also wakes through its pipe on every change.
_IDLE_WAIT: Final = 30.0

_Callback = TypeVar("_Callback", bound=Callable[..., Any])


def takes_arrival(callback: _Callback) -> _Callback:
    """Mark a socket listener as ``callback(data, received_at)``: it gets each
    datagram's arrival time on ``time.monotonic()``'s clock."""
    callback.takes_arrival = True  # type: ignore[attr-defined]
    return callback


class _ReaderHub:
    """The thread that reads the sockets of every running :class:`SharedSocketReader`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: list[SharedSocketReader] = []
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        # Keeps the kernel's timestamping on for the process (see enable_timestamps).
        enable_timestamps(self._wake_recv)
        self._thread: threading.Thread | None = None
        # Whether the socket list must be built again: set by every change, so
        # the busy loop does not rebuild it for each select() (with six
        # connections that cost the thread a third of its time).
        self._dirty = True
        self._receiver = StampedReceiver(_RECV_SIZE)

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
        self._dirty = True
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
        wake = self._wake_recv.fileno()
        ready: dict[int, tuple[socket.socket, SharedSocketReader]] = {}
        fds = [wake]
        while True:
            if self._dirty:
                # Cleared before listing: a change while listing wakes select() and lists again.
                self._dirty = False
                ready = self._sockets()
                fds = [wake, *ready]
            try:
                readable, _, _ = select.select(fds, [], [], _IDLE_WAIT)
            except (ValueError, OSError) as exc:
                # A socket was closed after it was listed (a reconnect): list them again.
                _log.debug("select on the voice sockets failed, safe to ignore: %r", exc)
                self._dirty = True
                continue
            self._receiver.calibrate()
            read = 0
            for fd in readable:
                if fd == wake:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_recv.recv(4096)
                    continue
                sock, reader = ready[fd]
                read += reader.drain(sock, self._receiver)
            if read:
                time.sleep(READ_PAUSE)


_hub = _ReaderHub()


class SharedSocketReader(SocketReaderBase):
    """discord.py's ``SocketReader`` interface, read by the process's shared thread.

    It is a ``Thread`` only by inheritance (discord.py's type): it is never started.
    """

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self._stopped = False
        _hub.add(self)

    def socket_to_read(self) -> socket.socket | None:
        """The connection's socket while reading is on, else None."""
        sock = self.connection_socket()
        if self._stopped or not self.reading() or sock is None:
            return None
        return sock if sock.fileno() >= 0 else None

    def drain(self, sock: socket.socket, receiver: StampedReceiver) -> int:
        """Hand every queued datagram of `sock` (at most :data:`_MAX_BATCH`) to the callbacks.

        Returns how many were read.
        """
        callbacks = [(callback, getattr(callback, "takes_arrival", False)) for callback in self.listeners()]
        fd = sock.fileno()
        for count in range(_MAX_BATCH):
            try:
                received = receiver.receive(fd)
            except OSError:
                _log.debug("error reading from the voice socket, safe to ignore", exc_info=True)
                return count
            if received is None:
                return count
            data, arrival = received
            for callback, timed in callbacks:
                try:
                    if timed:
                        callback(data, arrival)
                    else:
                        callback(data)
                except Exception:
                    _log.exception("error calling %s in %s", callback, self)
            if not data:
                return count + 1  # shut down on close (see client._WakingSocket): the next round drops it
        return _MAX_BATCH

    def on_change(self) -> None:
        """Listeners or pause state changed: the hub looks again."""
        _hub.changed()

    def on_stop(self) -> None:
        """discord.py ends this connection's reading: never read for it again."""
        self._stopped = True
        _hub.remove(self)

    def start(self) -> None:
        """Nothing to start: the shared thread reads (see the class)."""

    def is_alive(self) -> bool:
        """Whether this connection is still read: not stopped, and the shared thread runs."""
        return not self._stopped and _hub.alive()
