"""The voice socket's reader thread, reading datagrams in batches.

discord.py 2.7.1's ``SocketReader`` runs ``select()`` and then one ``recv()``
per datagram: two system calls, two GIL releases and a thread wake-up for
every packet of every speaker, which at hundreds of speakers is most of what
the thread does. :class:`BatchingSocketReader` keeps its threading contract
(register/unregister/pause/resume/stop, every callback sees every datagram,
a callback's exception is logged and does not stop the thread) and changes
only the read loop: once the socket is readable it reads until the socket is
empty, then pauses :data:`BATCH_PAUSE` so the next datagrams gather in the
kernel buffer (4 MiB, see ``client.RECEIVE_BUFFER_BYTES``) instead of waking
it one by one.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Final

from discord.voice_state import SocketReader

__all__ = ("BATCH_PAUSE", "MAX_BATCH", "BatchingSocketReader")

_log = logging.getLogger(__name__)

#: Seconds the reader sleeps after emptying the socket: the latency it adds,
#: and at 15,000 datagrams/s (300 speakers) about 75 datagrams queued meanwhile.
BATCH_PAUSE: Final = 0.005
#: Datagrams read before the loop looks at pause()/stop() and the socket again.
MAX_BATCH: Final = 512
_RECV_SIZE: Final = 2048


class BatchingSocketReader(SocketReader):
    """``discord.voice_state.SocketReader`` with a batched read loop."""

    def _do_run(self) -> None:
        while not self._end.is_set():
            if not self._running.is_set():
                self._running.wait()
                continue
            sock = self.state.socket  # re-read each time: a reconnect replaces it
            try:
                readable, _, _ = select.select([sock], [], [], 30)
            except (ValueError, TypeError, OSError) as exc:
                # As discord.py: the socket is closed or not created yet.
                _log.debug("select on the voice socket failed, safe to ignore: %r", exc)
                continue
            if readable:
                self._drain(sock)
                time.sleep(BATCH_PAUSE)

    def _drain(self, sock: object) -> None:
        """Hand every queued datagram (at most :data:`MAX_BATCH`) to the callbacks."""
        recv = sock.recv  # type: ignore[attr-defined]
        for _ in range(MAX_BATCH):
            try:
                data = recv(_RECV_SIZE)
            except BlockingIOError:
                return  # empty
            except OSError:
                _log.debug("error reading from the voice socket, safe to ignore", exc_info=True)
                return
            for callback in self._callbacks:
                try:
                    callback(data)
                except Exception:
                    _log.exception("error calling %s in %s", callback, self)
            if not data:
                return  # shut down (see client._WakingSocket): select again, on the new socket
