"""A loopback TCP relay a test can cut, to make a network fail for real.

Connections to :attr:`Relay.port` are forwarded to a server; :meth:`Relay.cut_after`
lets a number of bytes through towards the server (or back from it) and then
drops every connection and refuses new ones (each is closed as soon as it is
accepted) until :meth:`Relay.restore`. The client sees exactly what a dead network or a crashed
server shows it: connections reset or closed without an answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["Relay"]


class Relay:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port`` until cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._budget: int | None = None
        self._budget_towards_server = True
        self._down = False
        #: Bytes forwarded towards the server since the relay started.
        self.forwarded = 0
        #: Bytes forwarded back from the server since the relay started.
        self.returned = 0
        #: Connections closed unanswered while the relay was cut.
        self.refused = 0
        self._closed = False
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    @property
    def down(self) -> bool:
        """Whether the relay is cut now."""
        with self._lock:
            return self._down

    def cut_after(self, budget: int, *, towards_server: bool = True) -> None:
        """Let ``budget`` more bytes through towards the server (or, with
        ``towards_server=False``, back from it), then cut."""
        with self._lock:
            self._budget_towards_server = towards_server
            self._budget = (self.forwarded if towards_server else self.returned) + budget

    def restore(self) -> None:
        """Forward again, without limit."""
        with self._lock:
            self._budget = None
            self._down = False

    def close(self) -> None:
        """Stop relaying and close everything."""
        self._closed = True
        self._listener.close()
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                with self._lock:
                    self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, towards_server: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    counted = self.forwarded if towards_server else self.returned
                    limited = self._budget is not None and self._budget_towards_server == towards_server
                    if limited:
                        data = data[:max(0, self._budget - counted)]
                    if towards_server:
                        self.forwarded += len(data)
                    else:
                        self.returned += len(data)
                    cut = limited and counted + len(data) >= self._budget
                    if cut:
                        self._down = True
                if data:
                    sink.sendall(data)
                if cut:
                    self._drop_all()
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
