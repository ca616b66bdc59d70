"""AudioSink: the recording engine's front door.

``write()`` runs on the network thread(s) and must never block: it picks the
user's worker, does a length check and an append on that worker's
``queue.SimpleQueue`` and nothing else.
``SimpleQueue.put`` never waits for the lock its ``get`` sleeps on (it only
releases it to wake the worker), unlike ``queue.Queue.put``, which takes the
mutex the consumer holds. The bound is ``qsize()`` against ``queue_size``;
with several producer threads it can be exceeded by at most one item per
producer, which a bound meant to cap memory tolerates. Drops are counted in
per-thread cells (:class:`~sinks.metrics.DropCounter`), everything else by
the workers (:mod:`sinks.worker`), so no counter has two writers.

Users are sharded over ``workers`` worker threads (``user_id % workers``),
each owning its users' decoders and files; libopus runs without the GIL, so
on several cores two workers decode in parallel. At close every worker
flushes, then all agree on the recording's length (a barrier), then each
pads and finalizes its own files.

One ``write()`` in :data:`WRITE_SAMPLE_EVERY` is timed into a fixed
histogram (per producer thread, like the drop counter), so ``stats()``
reports the write latency under real load at the cost of one decrement per
write.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import queue
import threading
import time
from time import perf_counter_ns
from collections.abc import Callable
from typing import Any, Final

from .metrics import DropCounter
from .opus import SAMPLE_RATE
from .packet import VoicePacket
from .worker import STOP, FinishLine, Worker

__all__ = ["AudioSink", "WriteLatency", "WRITE_SAMPLE_EVERY", "DEFAULT_QUEUE_SIZE"]

_log = logging.getLogger(__name__)

#: Packets each worker's queue holds by default: about a second of 300
#: speakers (a few MB at most). A voice client that joins a busy channel gets
#: up to two seconds of every speaker's held packets at once when SPEAKING
#: names them; 4096 dropped part of that burst at 300 speakers.
DEFAULT_QUEUE_SIZE: Final = 16384
#: One write() in this many is timed.
WRITE_SAMPLE_EVERY: Final = 64
#: Histogram bucket width and count: 250 ns buckets up to 50 us, the last one open-ended.
_BUCKET_NS: Final = 250
_BUCKETS: Final = 200


class WriteLatency:
    """Sampled ``write()`` durations in a fixed histogram, one cell per producer thread."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[int, list[int]] = {}

    def add(self, nanoseconds: int) -> None:
        """Count one duration in the calling thread's own histogram."""
        ident = threading.get_ident()
        cell = self._cells.get(ident)
        if cell is None:
            cell = self._cells.setdefault(ident, [0] * _BUCKETS)
        cell[min(nanoseconds // _BUCKET_NS, _BUCKETS - 1)] += 1

    def summary(self) -> tuple[int, float | None, float | None]:
        """(samples, p50 us, p99 us); each percentile is the upper edge of its bucket."""
        totals = [sum(column) for column in zip(*list(self._cells.values()))]
        count = sum(totals)
        if not count:
            return 0, None, None
        return count, self._percentile(totals, count, 0.50), self._percentile(totals, count, 0.99)

    @staticmethod
    def _percentile(totals: list[int], count: int, q: float) -> float:
        seen = 0
        for index, n in enumerate(totals):
            seen += n
            if seen >= q * count:
                return (index + 1) * _BUCKET_NS / 1000
        return _BUCKETS * _BUCKET_NS / 1000


class AudioSink:
    """Records every user's Opus packets to ``<directory>/<user_id>.wav``, time-aligned.

    Every track starts at the sink's creation time on ``clock`` (the clock the
    packets' ``received_at`` come from), holds silence where its user did not
    speak, and is padded at :meth:`close` to the recording's full length.
    Files are 48 kHz 16-bit PCM with ``channels`` channels (1 = mono downmix).
    ``queue_size`` bounds each worker's queue; ``workers`` is how many worker
    threads share the users.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        channels: int = 1,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.channels = channels
        self._clock = clock
        self._queues: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(workers)]
        # Bound methods, looked up once: write() indexes these by shard.
        self._puts = [q.put for q in self._queues]
        self._qsizes = [q.qsize for q in self._queues]
        self._shards = workers
        self._limit = queue_size
        self._dropped = DropCounter()
        self._latency = WriteLatency()
        self._countdown = WRITE_SAMPLE_EVERY
        self._closed = False
        self._close_lock = threading.Lock()
        #: The recording's sample 0, on ``clock``.
        self.started_at = clock()
        finish = FinishLine(workers)
        self._workers = [
            Worker(q, self.directory, channels=channels, origin=self.started_at, clock=clock, finish=finish)
            for q in self._queues
        ]
        self._threads = [
            threading.Thread(target=w.run, name=f"AudioSink({self.directory.name})#{i}", daemon=True)
            for i, w in enumerate(self._workers)
        ]
        for thread in self._threads:
            thread.start()

    def write(self, user_id: int, packet: VoicePacket) -> bool:
        """Queue one packet for ``user_id``. Never blocks.

        Returns False when the packet was dropped: the queue is full (counted
        in ``stats()["dropped"]``) or the sink is closed.
        """
        # A racy decrement between producer threads only shifts which write is timed.
        left = self._countdown - 1
        if left:
            self._countdown = left
            return self._write(user_id, packet)
        self._countdown = WRITE_SAMPLE_EVERY
        began = perf_counter_ns()
        accepted = self._write(user_id, packet)
        self._latency.add(perf_counter_ns() - began)
        return accepted

    def _write(self, user_id: int, packet: VoicePacket) -> bool:
        if self._closed:
            return False
        shard = 0
        if self._shards > 1:
            try:
                shard = hash(user_id) % self._shards  # an int's hash is itself
            except TypeError:
                pass  # not a user id: the first worker counts it as invalid
        if self._qsizes[shard]() >= self._limit:
            self._dropped.increment()
            return False
        self._puts[shard]((user_id, packet))
        return True

    def add_user(self, user_id: int) -> bool:
        """Start ``user_id``'s track now, before any audio (so it exists even if they never speak).

        Optional: a track starts by itself with the user's first packet. Same
        queue and return value as :meth:`write`.
        """
        return self._write(user_id, None)  # type: ignore[arg-type]

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def error(self) -> str | None:
        """The fatal error that stopped the recording, or None."""
        return next((w.error for w in self._workers if w.error is not None), None)

    @property
    def error_errno(self) -> int | None:
        """The errno of :attr:`error` when the OS gave one (``errno.ENOSPC``: the disk
        is full), so a caller can say why in words without the file's path."""
        return next((w.error_errno for w in self._workers if w.error is not None), None)

    def _tracks(self) -> dict[int, Any]:
        tracks: dict[int, Any] = {}
        for worker in self._workers:
            tracks.update(worker.tracks)  # each worker replaces its dict whole: a consistent copy
        return tracks

    def files(self) -> dict[int, pathlib.Path]:
        """The WAV file of every user with a track so far."""
        return {uid: track.writer.path for uid, track in self._tracks().items()}

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (each exact; read one after another, not atomically).

        Keys: received, dropped, drop_rate, decoded, lost, concealed,
        duplicates, late, decode_errors, invalid, discarded, queue_depth,
        queue_high_water, worker_lag (seconds; 0 when idle), worker_lag_max
        (seconds, the largest sampled since the start), write_samples,
        write_p50_us and write_p99_us (sampled write() latency; None before
        any sample), workers, bytes_written, users, talk_seconds ({user_id:
        seconds of non-silent decoded audio}), per_user ({user_id:
        {"packets": decoded, "lost": never received}}), error (None or a
        one-line message), closed.
        """
        counters: dict[str, int] = {}
        for worker in self._workers:
            for name, value in worker.counters.snapshot().items():
                counters[name] = counters.get(name, 0) + value
        depth = sum(qsize() for qsize in self._qsizes)
        dropped = self._dropped.value
        received = counters.pop("dequeued") + depth + dropped
        tracks = self._tracks()
        now = self._clock()
        refs = [w.lag_ref for w in self._workers if w.lag_ref is not None]
        lag = max(0.0, now - min(refs)) if refs and not self._closed else 0.0
        samples, p50, p99 = self._latency.summary()
        return {
            "received": received,
            "dropped": dropped,
            "drop_rate": dropped / received if received else 0.0,
            **counters,
            "queue_depth": depth,
            "queue_high_water": max(max(w.high_water for w in self._workers), depth),
            "worker_lag": lag,
            "worker_lag_max": max(lag, *(w.lag_max for w in self._workers)),
            "write_samples": samples,
            "write_p50_us": p50,
            "write_p99_us": p99,
            "workers": self._shards,
            "bytes_written": sum(t.writer.bytes_written for t in tracks.values()),
            "users": len(tracks),
            "talk_seconds": {uid: t.talk_samples / SAMPLE_RATE for uid, t in tracks.items()},
            "per_user": {uid: {"packets": t.packets, "lost": t.lost} for uid, t in tracks.items()},
            "error": self.error,
            "closed": self._closed,
        }

    def close(self) -> None:
        """Stop accepting packets, let the workers finish and finalize every file. Idempotent.

        On return no thread of the sink is left and every file is a complete
        WAV of the same length (the recording's duration). Logs the final
        counters at INFO.
        """
        with self._close_lock:
            first = not self._closed
            if first:
                self._closed = True
                end = self._clock()
                for worker, put in zip(self._workers, self._puts):
                    worker.end_time = end
                    put(STOP)
            for thread in self._threads:
                thread.join()
        if first:
            stats = self.stats()
            summary = {key: stats[key] for key in _CLOSE_KEYS}
            _log.info("recording engine %s closed: %s", self.directory.name, json.dumps(summary))

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AudioSink {str(self.directory)!r} users={len(self._tracks())} closed={self._closed}>"


#: The counters logged when a sink closes (what an operator reads after a recording).
_CLOSE_KEYS: Final = (
    "users", "received", "dropped", "decoded", "lost", "late", "duplicates", "decode_errors",
    "queue_high_water", "worker_lag_max", "write_samples", "write_p50_us", "write_p99_us", "workers",
    "error",
)
