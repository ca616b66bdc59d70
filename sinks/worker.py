"""The recording workers: the threads that decode and write, and the pool that owns them.

A :class:`WorkerPool` runs a few :class:`Worker` threads, each with its own
unbounded ``queue.SimpleQueue`` (the sink bounds it by ``qsize()``). Any
number of recordings share one pool: each has a :class:`~sinks.slices.RecordingSlice`
on every worker, and a user's packets always go to the same worker. Every
track, decoder and WAV file is touched by that worker thread alone, and all
disk I/O happens there, outside any lock. A worker wakes at least every
:data:`SYNC_INTERVAL`, packets or not, to bring WAV headers up to date (so a
SIGKILL loses at most the last second) and to commit reorder windows that
went quiet.

Why one pool for every recording rather than threads per recording: a bot
recording six guilds had six workers and the socket reader contending for
the GIL. 300 speakers cost 107 % of a core and lost 35 % of their datagrams
in the kernel, while the same 300 over one connection and one worker cost
93 % and lost none (``python -m tests.bench load``).

Packets travel as ``(slice, user_id, packet)`` tuples; anything else on the
queue is a control step (a callable run on the worker) or :data:`STOP`,
the sentinel that ends the thread. :meth:`WorkerPool.close` sends it to
every worker and joins them.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from . import opus
from .slices import RecordingSlice
from .track import Backlog

__all__ = ["Worker", "WorkerPool", "STOP", "SYNC_INTERVAL", "BATCH_PAUSE", "DEFAULT_QUEUE_SIZE"]

_log = logging.getLogger(__name__)

#: Packets each worker's queue holds by default: about a second of 300
#: speakers (a few MB at most). A voice client that joins a busy channel gets
#: up to two seconds of every speaker's held packets at once when SPEAKING
#: names them; 4096 dropped part of that burst at 300 speakers.
DEFAULT_QUEUE_SIZE: Final = 16384
#: Seconds between WAV header refreshes: a SIGKILL loses this, plus the packets
#: on their way through the reader and the queue. The promise is the last second,
#: so the interval leaves room for that path under load; each worker keeps its
#: own cycle, so a speaker on another worker may be anywhere in theirs.
SYNC_INTERVAL: Final = 0.8
#: Seconds between checks for reorder windows that went quiet.
_IDLE_CHECK: Final = 0.05
#: Seconds the worker pauses when it has emptied the queue while packets are
#: flowing, before it looks again; only an idle worker blocks in ``get()``.
#: Blocked, it had to be woken by every ``put()``: a futex wake per packet in
#: ``write()``, often a context switch on the producer's CPU (the ``write()``
#: latency outliers), and a GIL hand-off per packet. Paused, it takes the
#: packets in batches, at the cost of this much extra latency.
BATCH_PAUSE: Final = 0.005
#: Seconds without packets after which the worker stops pausing and blocks.
#: The socket reader hands packets over in batches a few ms apart (see
#: bot.voice.reader); blocking at the first empty look, the worker was
#: woken by the next batch's first put(), and write() p99 rose to 16-29 us.
_FLOWING: Final = 0.1
#: Item on the queue that tells the worker to finish.
STOP: Final = object()


class Worker:
    """One thread's queue and the slices it serves."""

    def __init__(self, items: queue.SimpleQueue[Any], deep: int) -> None:
        self.items = items
        #: Deep while more than ``deep`` packets wait: its tracks then shed concealment.
        self.backlog = Backlog()
        self._deep = deep
        #: Only the worker thread touches this set.
        self._slices: set[RecordingSlice] = set()
        #: received_at of the packet being processed; None when the queue is empty.
        self.lag_ref: float | None = None
        # Control steps in the queue, so its depth in packets is known.
        self._controls = 0
        self._controls_lock = threading.Lock()

    def send(self, step: Callable[[], None]) -> None:
        """Run ``step`` on the worker thread after the items already queued."""
        with self._controls_lock:
            self._controls += 1
        self.items.put(step)

    def serve(self, slice_: RecordingSlice) -> None:
        """Start looking after ``slice_`` (header refreshes, quiet reorder windows)."""
        self.send(functools.partial(self._slices.add, slice_))

    def finish(self, slice_: RecordingSlice, length: int) -> None:
        """Finish ``slice_``'s files at ``length`` frames, then stop looking after it."""
        self.send(functools.partial(self._finish, slice_, length))

    def _finish(self, slice_: RecordingSlice, length: int) -> None:
        self._slices.discard(slice_)
        slice_.finish(length)

    def run(self) -> None:
        """The thread body: serve until STOP. A bug fails the recordings it touched, not the thread."""
        while True:
            try:
                self._serve()
                break
            except Exception as exc:
                _log.exception("recording worker crashed")
                for slice_ in self._slices:
                    slice_.fail(f"recording worker crashed: {exc!r}")
        if self._slices:
            _log.warning("recording worker stopped with %d recordings unfinished", len(self._slices))
            self._sync()

    def _serve(self) -> None:
        items = self.items
        get, qsize = items.get, items.qsize
        monotonic, sleep = time.monotonic, time.sleep
        next_sync = monotonic() + SYNC_INTERVAL
        next_idle = 0.0
        # Whether some reorder window may hold packets: checking every track at
        # each empty-queue moment would cost O(users) per packet at high load.
        maybe_pending = False
        last_item = 0.0  # when an item was last handled
        backlog, deep = self.backlog, self._deep
        while True:
            depth = qsize()
            if depth == 0:
                self.lag_ref = None
                now = monotonic()
                if maybe_pending and now >= next_idle:
                    maybe_pending = self._commit_quiet()
                    next_idle = now + _IDLE_CHECK
                if now >= next_sync:
                    self._sync()
                    next_sync = now + SYNC_INTERVAL
                if now - last_item < _FLOWING:
                    # Packets are flowing: let the next ones gather rather than block
                    # in get(), where each put() would have to wake this thread.
                    sleep(BATCH_PAUSE)
                    continue
                wake = min(next_sync, next_idle) if maybe_pending else next_sync
                try:
                    item = get(timeout=max(wake - now, 0.001))
                except queue.Empty:
                    continue
                depth = 1
            else:
                item = get()
            if item.__class__ is tuple:
                slice_, user_id, packet = item
                packets = depth - self._controls
                if packets > slice_.high_water:
                    slice_.high_water = packets
                backlog.deep = packets > deep
                arrival = slice_.handle(user_id, packet)
                if arrival is not None:
                    self.lag_ref = arrival
                maybe_pending = True
                last_item = monotonic()
                if last_item >= next_sync:
                    self._sync()
                    next_sync = monotonic() + SYNC_INTERVAL
            elif item is STOP:
                return
            else:
                with self._controls_lock:
                    self._controls -= 1
                try:
                    item()
                except Exception:  # one recording's bug; the steps themselves keep its close going
                    _log.exception("a recording's control step failed")

    def _commit_quiet(self) -> bool:
        holding = False
        for slice_ in self._slices:
            holding = slice_.commit_quiet() or holding
        return holding

    def _sync(self) -> None:
        for slice_ in self._slices:
            slice_.sync()


class WorkerPool:
    """``threads`` worker threads, shared by every recording given this pool.

    ``queue_size`` bounds each worker's queue (packets beyond it are dropped
    by ``AudioSink.write``); while more than half of it waits, the worker's
    tracks leave lost frames silent rather than conceal them (see
    :class:`~sinks.track.Backlog`). :meth:`close` ends the threads; close the
    recordings first. Raises :class:`~sinks.opus.OpusError` when libopus is
    missing: a bot learns that at start-up, not when somebody first speaks.
    """

    def __init__(self, threads: int = 1, *, queue_size: int = DEFAULT_QUEUE_SIZE, name: str = "shared") -> None:
        if threads < 1:
            raise ValueError(f"workers must be at least 1, not {threads}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        opus.load()  # here, not at a worker's first decode: see opus.load
        self.queue_size = queue_size
        self.workers = [Worker(queue.SimpleQueue(), queue_size // 2) for _ in range(threads)]
        self._threads = [
            threading.Thread(target=w.run, name=f"AudioSink({name})#{i}", daemon=True)
            for i, w in enumerate(self.workers)
        ]
        self._close_lock = threading.Lock()
        self._closed = False
        for thread in self._threads:
            thread.start()

    @property
    def alive(self) -> bool:
        """Whether every worker thread runs."""
        return all(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        """Send every worker the STOP sentinel and join them. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                for worker in self.workers:
                    worker.items.put(STOP)
            for thread in self._threads:
                thread.join()

    def __repr__(self) -> str:
        return f"<WorkerPool threads={len(self.workers)} alive={self.alive}>"
