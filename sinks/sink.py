"""AudioSink: the recording engine's front door.

``write()`` runs on the network thread(s) and must never block: it does a
length check and an append on a ``queue.SimpleQueue`` and nothing else.
``SimpleQueue.put`` never waits for the lock its ``get`` sleeps on (it only
releases it to wake the worker), unlike ``queue.Queue.put``, which takes the
mutex the consumer holds. The bound is ``qsize()`` against ``queue_size``;
with several producer threads it can be exceeded by at most one item per
producer, which a bound meant to cap memory tolerates. Drops are counted in
per-thread cells (:class:`~sinks.metrics.DropCounter`), everything else by
the worker (:mod:`sinks.worker`), so no counter has two writers.
"""

from __future__ import annotations

import logging
import os
import pathlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .metrics import DropCounter
from .opus import SAMPLE_RATE
from .packet import VoicePacket
from .worker import STOP, Worker

__all__ = ["AudioSink"]

_log = logging.getLogger(__name__)


class AudioSink:
    """Records every user's Opus packets to ``<directory>/<user_id>.wav``, time-aligned.

    Every track starts at the sink's creation time on ``clock`` (the clock the
    packets' ``received_at`` come from), holds silence where its user did not
    speak, and is padded at :meth:`close` to the recording's full length.
    Files are 48 kHz 16-bit PCM with ``channels`` channels (1 = mono downmix).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        queue_size: int = 4096,
        channels: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.channels = channels
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._put = self._queue.put
        self._qsize = self._queue.qsize
        self._limit = queue_size
        self._dropped = DropCounter()
        self._closed = False
        self._close_lock = threading.Lock()
        #: The recording's sample 0, on ``clock``.
        self.started_at = clock()
        self._worker = Worker(
            self._queue, self.directory, channels=channels, origin=self.started_at, clock=clock,
        )
        self._thread = threading.Thread(
            target=self._worker.run, name=f"AudioSink({self.directory.name})", daemon=True,
        )
        self._thread.start()

    def write(self, user_id: int, packet: VoicePacket) -> bool:
        """Queue one packet for ``user_id``. Never blocks.

        Returns False when the packet was dropped: the queue is full (counted
        in ``stats()["dropped"]``) or the sink is closed.
        """
        if self._closed:
            return False
        if self._qsize() >= self._limit:
            self._dropped.increment()
            return False
        self._put((user_id, packet))
        return True

    def add_user(self, user_id: int) -> bool:
        """Start ``user_id``'s track now, before any audio (so it exists even if they never speak).

        Optional: a track starts by itself with the user's first packet. Same
        queue and return value as :meth:`write`.
        """
        return self.write(user_id, None)  # type: ignore[arg-type]

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def error(self) -> str | None:
        """The fatal error that stopped the recording, or None."""
        return self._worker.error

    def files(self) -> dict[int, pathlib.Path]:
        """The WAV file of every user with a track so far."""
        return {uid: track.writer.path for uid, track in dict(self._worker.tracks).items()}

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (each exact; read one after another, not atomically).

        Keys: received, dropped, drop_rate, decoded, lost, concealed,
        duplicates, late, decode_errors, invalid, discarded, queue_depth,
        queue_high_water, worker_lag (seconds; 0 when idle), bytes_written,
        users, talk_seconds ({user_id: seconds of non-silent decoded audio}),
        per_user ({user_id: {"packets": decoded, "lost": never received}}),
        error (None or a one-line message), closed.
        """
        worker = self._worker
        counters = worker.counters.snapshot()
        depth = self._qsize()
        dropped = self._dropped.value
        accepted = counters["dequeued"] + depth
        received = accepted + dropped
        tracks = dict(worker.tracks)
        lag_ref = worker.lag_ref
        lag = max(0.0, self._clock() - lag_ref) if lag_ref is not None and not self._closed else 0.0
        del counters["dequeued"]
        return {
            "received": received,
            "dropped": dropped,
            "drop_rate": dropped / received if received else 0.0,
            **counters,
            "queue_depth": depth,
            "queue_high_water": max(worker.high_water, depth),
            "worker_lag": lag,
            "bytes_written": sum(t.writer.bytes_written for t in tracks.values()),
            "users": len(tracks),
            "talk_seconds": {uid: t.talk_samples / SAMPLE_RATE for uid, t in tracks.items()},
            "per_user": {uid: {"packets": t.packets, "lost": t.lost} for uid, t in tracks.items()},
            "error": worker.error,
            "closed": self._closed,
        }

    def close(self) -> None:
        """Stop accepting packets, let the worker finish and finalize every file. Idempotent.

        On return no thread of the sink is left and every file is a complete
        WAV of the same length (the recording's duration).
        """
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._worker.end_time = self._clock()
                self._put(STOP)
            self._thread.join()

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AudioSink {str(self.directory)!r} users={len(self._worker.tracks)} closed={self._closed}>"
