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
in batches: a thread wake-up, a ``poll()`` and a GIL hand-off per batch
instead of per datagram. ``poll()``, not ``select()``: select refuses
descriptors from 1024 (FD_SETSIZE) on, which a process holding many files
(soft RLIMIT_NOFILE above 1024, as in Docker) hands its voice sockets. The
poll set is built again only when the sockets change. Each datagram still carries its own arrival time,
the kernel's (:mod:`bot.voice.stamped`; the voice client turns stamping on
as it creates each socket), to callbacks marked with :func:`takes_arrival`;
others get the datagram alone, as in discord.py.
With six connections of 50 speakers, the pause and the GIL kept through
every read took the worker's lag at 300 speakers from failing (sink queue
drops) to under 200 ms (``python -m tests.bench load``).

If the hub cannot poll even right after listing its sockets afresh, reading
has failed: it is logged once, counted (:func:`reader_failures`), and every
connection it reads is told through its ``on_failure`` callback (the voice
client stops the recording with a reason) instead of the thread spinning.
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

__all__ = ("SharedSocketReader", "takes_arrival", "READ_PAUSE", "ReaderFailure", "reader_failures")

_log = logging.getLogger(__name__)

#: Datagrams read from one socket before the others get their turn.
_MAX_BATCH: Final = 256
#: Seconds the hub waits after a batch before it reads again (not the sink
#: worker's ``sinks.worker.BATCH_PAUSE``, a pause of its own). The socket
#: buffers (see client.RECEIVE_BUFFER_BYTES) hold far more than this much.
READ_PAUSE: Final = 0.003
_RECV_SIZE: Final = 2048
#: poll() timeout in milliseconds: the hub also wakes through its pipe on every change.
_IDLE_WAIT_MS: Final = 30_000
#: Seconds the hub waits after a failure before it tries again (no spinning).
_FAILURE_BACKOFF: Final = 1.0
_READABLE: Final = select.POLLIN | select.POLLPRI

_Callback = TypeVar("_Callback", bound=Callable[..., Any])
#: Told why reading failed for good; called on the hub thread.
OnFailure = Callable[[BaseException], None]


class ReaderFailure(RuntimeError):
    """The shared reader could not read the voice sockets (why is in ``__cause__``)."""


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
        # the busy loop does not rebuild it for each poll() (with six
        # connections that cost the thread a third of its time).
        self._dirty = True
        self._receiver = StampedReceiver(_RECV_SIZE)
        #: Failures so far (each logged once); read by :func:`reader_failures`.
        self.failures = 0

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

    def _listen(self, wake: int) -> tuple[dict[int, tuple[socket.socket, SharedSocketReader]], Any]:
        """The current sockets and a poll set of them (plus the wake-up socket)."""
        ready = self._sockets()
        poller = select.poll()
        poller.register(wake, _READABLE)
        for fd in ready:
            poller.register(fd, _READABLE)
        return ready, poller

    def _fail(self, exc: BaseException, *, first: bool) -> None:
        """Reading failed even on a fresh socket list: say so once (`first` of a run of
        failures), count it, and tell every connection read (its recording must stop:
        nothing reaches it) rather than spin."""
        if first:
            self.failures += 1
            _log.error("the voice socket reader failed (%s: %s); stopping the recordings it read",
                       type(exc).__name__, exc)
        with self._lock:
            readers = list(self._readers)
        error = ReaderFailure(f"reading the voice sockets failed ({type(exc).__name__})")
        error.__cause__ = exc
        for reader in readers:
            reader.fail(error)

    def _run(self) -> None:
        wake = self._wake_recv.fileno()
        ready: dict[int, tuple[socket.socket, SharedSocketReader]] = {}
        poller = select.poll()
        # Whether the last poll failed on a list just built: a second failure is no race.
        fresh_failed = False
        while True:
            listed = self._dirty
            try:
                if listed:
                    # Cleared before listing: a change while listing wakes poll() and lists again.
                    self._dirty = False
                    ready, poller = self._listen(wake)
                events = poller.poll(_IDLE_WAIT_MS)
            except Exception as exc:  # the thread must never die or spin silently
                if listed:
                    self._fail(exc, first=not fresh_failed)
                    fresh_failed = True
                    time.sleep(_FAILURE_BACKOFF)
                else:  # a socket closed after it was listed (a reconnect): list them again
                    _log.debug("polling the voice sockets failed, listing them again: %r", exc)
                self._dirty = True
                continue
            fresh_failed = False
            self._receiver.calibrate()
            read = 0
            for fd, revents in events:
                if fd == wake:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_recv.recv(4096)
                    continue
                entry = ready.get(fd)
                if entry is None or revents & select.POLLNVAL:
                    # Closed after it was listed (a reconnect): list the sockets again.
                    self._dirty = True
                    continue
                sock, reader = entry
                # POLLERR too: the read takes the pending error (an ICMP refusal) off the socket.
                read += reader.drain(sock, self._receiver)
            if read:
                time.sleep(READ_PAUSE)


_hub = _ReaderHub()


def reader_failures() -> int:
    """How many times the process's shared voice socket reader failed (see the module)."""
    return _hub.failures


class SharedSocketReader(SocketReaderBase):
    """discord.py's ``SocketReader`` interface, read by the process's shared thread.

    It is a ``Thread`` only by inheritance (discord.py's type): it is never started.
    """

    def __init__(self, state: Any, *, on_failure: OnFailure | None = None) -> None:
        super().__init__(state)
        self._stopped = False
        self._on_failure = on_failure
        _hub.add(self)

    def fail(self, error: BaseException) -> None:
        """Reading failed for good: tell the connection (on the hub thread)."""
        if self._on_failure is None:
            return
        try:
            self._on_failure(error)
        except Exception:
            _log.exception("error reporting a reader failure to %s", self)

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
