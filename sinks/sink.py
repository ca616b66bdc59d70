"""AudioSink: the recording engine's front door.

``write()`` runs on the network thread(s) and must never block: it picks the
user's worker, does a length check and an append on that worker's
``queue.SimpleQueue`` and nothing else.
``SimpleQueue.put`` never waits for the lock its ``get`` sleeps on (it only
releases it to wake the worker), unlike ``queue.Queue.put``, which takes the
mutex the consumer holds. The bound is ``qsize()`` against the pool's
``queue_size``; with several producer threads it can be exceeded by at most
one item per producer, which a bound meant to cap memory tolerates. Accepted
and dropped packets are counted in per-thread cells
(:class:`~sinks.metrics.ThreadCounter`), everything else by the workers
(:mod:`sinks.slices`), so no counter has two writers.

The workers are a :class:`~sinks.worker.WorkerPool`: the sink's own (started
here, ``workers`` threads, stopped at close by a sentinel and join) or one
shared by every recording of the process. Users are divided among its threads
(``user_id % threads``), one slice of the recording each, each owning its users' decoders and files; libopus
runs without the GIL, so on several cores two workers decode in parallel. At
close every slice commits what it holds, all agree on the recording's length,
then each pads and finalizes its own files (:class:`~sinks.slices.FinishLine`).

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
import threading
import time
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, Final

from .metrics import ThreadCounter
from .opus import SAMPLE_RATE
from .packet import VoicePacket
from .slices import FinishLine, RecordingSlice
from .stats import EngineStats, RecordingFailure, UserStats
from .worker import DEFAULT_QUEUE_SIZE, WorkerPool

__all__ = ["AudioSink", "earlier_tracks", "WriteLatency", "WRITE_SAMPLE_EVERY", "DEFAULT_QUEUE_SIZE"]

_log = logging.getLogger(__name__)

#: One write() in this many is timed.
WRITE_SAMPLE_EVERY: Final = 64
#: Histogram bucket width and count: 250 ns buckets up to 50 us, the last one open-ended.
_BUCKET_NS: Final = 250
_BUCKETS: Final = 200
#: Seconds between checks, while close() waits for the workers, that they still run.
_CLOSE_POLL: Final = 1.0


def earlier_tracks(directory: pathlib.Path) -> list[int]:
    """The users whose ``<user_id>.wav`` an earlier sink left in ``directory``."""
    return sorted(int(p.stem) for p in directory.glob("*.wav") if p.stem.isdigit())


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

    ``origin`` (on ``clock``) is the recording's sample 0 when it is not the
    sink's creation. ``resume`` continues a recording an earlier sink (an
    earlier process) wrote in ``directory``: every ``<user_id>.wav`` there is
    reopened at once and appended to, each new sample placed ``origin`` on,
    so the time no sink ran is silence and the tracks stay aligned.

    ``pool`` is the worker threads to record on, shared with other
    recordings. Without it the sink starts its own pool of ``workers``
    threads whose queues hold ``queue_size`` packets each, and stops it at
    :meth:`close`; with it, those two are the pool's to set.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        pool: WorkerPool | None = None,
        queue_size: int | None = None,
        channels: int = 1,
        workers: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        origin: float | None = None,
        resume: bool = False,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        if pool is not None and (queue_size is not None or workers is not None):
            raise ValueError("queue_size and workers are the pool's settings when a pool is given")
        self.directory = pathlib.Path(directory)
        self._own_pool = pool is None
        self._pool = pool if pool is not None else WorkerPool(
            workers if workers is not None else 1,
            queue_size=queue_size if queue_size is not None else DEFAULT_QUEUE_SIZE,
            name=self.directory.name,
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.channels = channels
        self._clock = clock
        self._workers = self._pool.workers
        # Bound methods, looked up once: write() indexes these by slice.
        self._puts = [w.items.put for w in self._workers]
        self._qsizes = [w.items.qsize for w in self._workers]
        self._lanes = len(self._workers)
        self._limit = self._pool.queue_size
        self._accepted = ThreadCounter()
        self._dropped = ThreadCounter()
        self._latency = WriteLatency()
        self._countdown = WRITE_SAMPLE_EVERY
        self._closed = False
        self._close_lock = threading.Lock()
        #: The recording's sample 0, on ``clock``.
        self.started_at = clock() if origin is None else origin
        self._finish = FinishLine(self._lanes, self._agreed)
        self._slices = [
            RecordingSlice(self.directory, channels=channels, origin=self.started_at, clock=clock, finish=self._finish,
                  backlog=worker.backlog, append=resume)
            for worker in self._workers
        ]
        for worker, slice_ in zip(self._workers, self._slices):
            worker.serve(slice_)
        if resume:
            # Every earlier track goes on, so the close pads even those nobody adds to.
            for user_id in earlier_tracks(self.directory):
                self.add_user(user_id)

    def write(self, user_id: int, packet: VoicePacket) -> bool:
        """Queue one packet for ``user_id``. Never blocks.

        Returns False when the packet was dropped: the queue is full (counted
        in ``stats().dropped``) or the sink is closed.
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
        lane = 0
        if self._lanes > 1:
            try:
                lane = hash(user_id) % self._lanes  # an int's hash is itself
            except TypeError:
                pass  # not a user id: the first worker counts it as invalid
        if self._qsizes[lane]() >= self._limit:
            self._dropped.increment()
            return False
        self._accepted.increment()  # before the put, so the depth in stats() is never negative
        self._puts[lane]((self._slices[lane], user_id, packet))
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
    def failure(self) -> RecordingFailure | None:
        """The fatal error that stopped the recording, or None."""
        return next((s.failure for s in self._slices if s.failure is not None), None)

    def _tracks(self) -> dict[int, Any]:
        return self._per_user("tracks")

    def _per_user(self, name: str) -> dict[int, Any]:
        """Every slice's ``tracks`` or ``talk`` in one dict (each slice replaces its dicts whole:
        a consistent copy)."""
        merged: dict[int, Any] = {}
        for slice_ in self._slices:
            merged.update(getattr(slice_, name))
        return merged

    def files(self) -> dict[int, pathlib.Path]:
        """The WAV file of every user with a track so far."""
        return {uid: track.writer.path for uid, track in self._tracks().items()}

    def stats(self) -> EngineStats:
        """A snapshot of the counters (each exact; read one after another, not atomically)."""
        counters: dict[str, int] = {}
        for slice_ in self._slices:
            for name, value in slice_.counters.snapshot().items():
                counters[name] = counters.get(name, 0) + value
        dropped = self._dropped.value
        accepted = self._accepted.value
        depth = max(0, accepted - counters["dequeued"])
        received = accepted + dropped
        tracks = self._tracks()
        # After the tracks: a slice publishes a user's talk meter before the track.
        talk = self._per_user("talk")
        now = self._clock()
        refs = [w.lag_ref for w in self._workers if w.lag_ref is not None]
        lag = max(0.0, now - min(refs)) if refs and not self._closed else 0.0
        samples, p50, p99 = self._latency.summary()
        return EngineStats(
            received=received,
            dropped=dropped,
            drop_rate=dropped / received if received else 0.0,
            decoded=counters["decoded"],
            lost=counters["lost"],
            concealed=counters["concealed"],
            shed=counters["shed"],
            duplicates=counters["duplicates"],
            late=counters["late"],
            decode_errors=counters["decode_errors"],
            invalid=counters["invalid"],
            discarded=counters["discarded"],
            queue_depth=depth,
            queue_high_water=max(max(s.high_water for s in self._slices), depth),
            worker_lag=lag,
            worker_lag_max=max(lag, *(s.lag_max for s in self._slices)),
            write_samples=samples,
            write_p50_us=p50,
            write_p99_us=p99,
            workers=self._lanes,
            bytes_written=sum(t.writer.bytes_written for t in tracks.values()),
            users=len(tracks),
            per_user={
                uid: UserStats(packets=t.packets, lost=t.lost, talk_seconds=talk[uid].talk_frames / SAMPLE_RATE)
                for uid, t in tracks.items()
            },
            failure=self.failure,
            closed=self._closed,
            untracked=counters["untracked"],
        )

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
                for worker, slice_ in zip(self._workers, self._slices):
                    slice_.end_time = end
                    worker.send(slice_.wind_up)
            while not self._finish.done.wait(_CLOSE_POLL):
                if not self._pool.alive:
                    raise RuntimeError(f"the recording workers stopped before {self.directory.name} was finished")
            if self._own_pool:
                self._pool.close()
        if first:
            summary = self.stats().log_fields(_CLOSE_FIELDS)
            _log.info("recording engine %s closed: %s", self.directory.name, json.dumps(summary))

    def _agreed(self, length: int) -> None:
        """Every slice has offered its length (on the last one's worker): finish them all at ``length``."""
        for worker, slice_ in zip(self._workers, self._slices):
            worker.finish(slice_, length)

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AudioSink {str(self.directory)!r} users={len(self._tracks())} closed={self._closed}>"


#: The counters logged when a sink closes (what an operator reads after a recording).
_CLOSE_FIELDS: Final = (
    "users", "received", "dropped", "decoded", "lost", "late", "duplicates", "decode_errors",
    "queue_high_water", "worker_lag_max", "write_samples", "write_p50_us", "write_p99_us", "workers",
    "untracked", "failure",
)
