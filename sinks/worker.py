"""The recording worker: the one thread that decodes and writes.

It owns every :class:`~sinks.track.Track` (decoders, reorder windows,
timelines, WAV writers) and does all disk I/O, outside any lock. It wakes at
least once a second, packets or not, to bring WAV headers up to date (so a
SIGKILL loses at most the last second) and to commit reorder windows that
went quiet. It survives bad packets (counted); a disk error is fatal to the
recording but not to the thread: it records the error, stops writing and
keeps draining the queue so producers never block, and finalization still
makes the files whole.
"""

from __future__ import annotations

import logging
import pathlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .metrics import WorkerCounters
from .opus import SAMPLE_RATE
from .packet import VoicePacket
from .track import Track
from .wavfile import WavWriter

__all__ = ["Worker", "FinishLine", "STOP", "SYNC_INTERVAL", "LAG_SAMPLE_EVERY", "BATCH_PAUSE"]

_log = logging.getLogger(__name__)

#: Seconds between WAV header refreshes (crash safety: the most a SIGKILL loses).
SYNC_INTERVAL: Final = 1.0
#: Seconds between checks for reorder windows that went quiet.
_IDLE_CHECK: Final = 0.05
#: A stream whose newest packet is this old (samples) has its reorder window committed.
_HOLD: Final = 6 * 960
#: Seconds the worker pauses when it has emptied the queue while packets are
#: flowing, before it looks again; only an idle worker blocks in ``get()``.
#: Blocked, it had to be woken by every ``put()``: a futex wake per packet in
#: ``write()``, often a context switch on the producer's CPU (the ``write()``
#: latency outliers), and a GIL hand-off per packet. Paused, it takes the
#: packets in batches, at the cost of this much extra latency.
BATCH_PAUSE: Final = 0.005
#: Item on the queue that tells the worker to finish.
STOP: Final = object()
#: One packet in this many has its lag (clock minus arrival) measured for ``lag_max``.
LAG_SAMPLE_EVERY: Final = 64


class FinishLine:
    """Where the workers of one sink agree on the recording's length at close.

    Each worker, having committed everything it holds, offers the length it
    needs; all wait until every worker has offered; each then pads its own
    tracks to the longest, so every file of the recording ends at the same sample.
    """

    def __init__(self, workers: int) -> None:
        self._barrier = threading.Barrier(workers)
        self._lengths: list[int] = []

    def agree(self, length: int) -> int:
        """Offer ``length`` (frames); return the longest offered by any worker."""
        self._lengths.append(length)  # one atomic append per worker, read after the barrier
        self._barrier.wait()
        return max(self._lengths)


class Worker:
    """Consumes ``(user_id, packet)`` items; ``packet`` None registers a user."""

    def __init__(
        self,
        items: queue.SimpleQueue[Any],
        directory: pathlib.Path,
        *,
        channels: int,
        origin: float,
        clock: Callable[[], float],
        finish: FinishLine | None = None,
    ) -> None:
        self._items = items
        self._finish = finish if finish is not None else FinishLine(1)
        self._directory = directory
        self._channels = channels
        self._origin = origin
        self._clock = clock
        #: Written only by the worker thread; readers copy it (dict copy is atomic under the GIL).
        self.tracks: dict[int, Track] = {}
        self.counters = WorkerCounters()
        self.high_water = 0
        #: received_at of the packet being processed; None when the queue is empty.
        self.lag_ref: float | None = None
        #: Largest sampled lag (seconds from a packet's arrival to its processing).
        self.lag_max = 0.0
        self._lag_countdown = LAG_SAMPLE_EVERY
        #: First fatal error, as a one-line message; None while healthy.
        self.error: str | None = None
        #: The errno of that error when the OS gave one (ENOSPC: the disk is full).
        self.error_errno: int | None = None
        #: Set by the sink before it sends STOP: the recording's end on ``clock``.
        self.end_time: float | None = None
        self._synced: dict[int, int] = {}

    def run(self) -> None:
        """The thread body: process until STOP, then finalize every file."""
        try:
            self._loop()
        except BaseException as exc:  # never die silently; the finally still finalizes
            self._fail(f"recording worker crashed: {exc!r}")
            _log.exception("recording worker crashed")
            self._drain_until_stop()
        finally:
            self._finalize()

    def _loop(self) -> None:
        items = self._items
        get, qsize = items.get, items.qsize
        monotonic, sleep = time.monotonic, time.sleep
        next_sync = monotonic() + SYNC_INTERVAL
        next_idle = 0.0
        # Whether some reorder window may hold packets: checking every track at
        # each empty-queue moment would cost O(users) per packet at high load.
        maybe_pending = False
        busy = False  # items handled since the queue was last found empty
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
                if busy:
                    # Packets are flowing: let the next ones gather rather than block
                    # in get(), where each put() would have to wake this thread.
                    busy = False
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
            if depth > self.high_water:
                # Once close() has queued STOP (end_time is set first), one item is no packet.
                self.high_water = max(self.high_water, depth - (self.end_time is not None))
            if item is STOP:
                return
            self._handle(item)
            maybe_pending = busy = True
            if monotonic() >= next_sync:
                self._sync()
                next_sync = monotonic() + SYNC_INTERVAL

    def _handle(self, item: tuple[int, VoicePacket | None]) -> None:
        counters = self.counters
        counters.dequeued += 1
        if self.error is not None:
            counters.discarded += 1
            return
        try:
            user_id, packet = item
            track = self.tracks.get(user_id)
            if track is None:
                track = self._open_track(user_id)
            if packet is not None:
                received_at = self.lag_ref = packet.received_at
                self._lag_countdown -= 1
                if not self._lag_countdown:
                    self._lag_countdown = LAG_SAMPLE_EVERY
                    lag = self._clock() - received_at
                    if lag > self.lag_max:
                        self.lag_max = lag
                track.add(packet)
        except OSError as exc:
            self._fail(f"writing the recording failed: {exc}", exc.errno)
        except Exception as exc:  # a malformed item must not stop the recording
            counters.invalid += 1
            if counters.invalid <= 10:
                _log.warning("ignored an unusable packet: %r", exc)

    def _open_track(self, user_id: int) -> Track:
        if not isinstance(user_id, int):
            raise TypeError(f"user id must be an int, not {type(user_id).__name__}")
        writer = WavWriter(self._directory / f"{user_id}.wav", self._channels, SAMPLE_RATE)
        track = Track(
            user_id, writer, channels=self._channels, origin=self._origin, counters=self.counters,
        )
        self.tracks = {**self.tracks, user_id: track}
        self._synced[user_id] = -1
        return track

    def _commit_quiet(self) -> bool:
        """Commit reorder windows whose stream went quiet; return whether any still hold packets."""
        if self.error is not None:
            return False
        now = round((self._clock() - self._origin) * SAMPLE_RATE)
        holding = False
        try:
            for track in self.tracks.values():
                if not track.pending:
                    continue
                last = track.last_arrival
                if last is not None and now - last >= _HOLD:
                    track.flush()
                else:
                    holding = True
        except OSError as exc:
            self._fail(f"writing the recording failed: {exc}", exc.errno)
        return holding

    def _sync(self) -> None:
        if self.error is not None:
            return
        synced = self._synced
        try:
            for user_id, track in self.tracks.items():
                frames = track.writer.frames
                if synced[user_id] != frames:
                    track.writer.sync_header()
                    synced[user_id] = frames
        except OSError as exc:
            self._fail(f"writing the recording failed: {exc}", exc.errno)

    def _fail(self, message: str, errno: int | None = None) -> None:
        if self.error is None:
            self.error = message
            self.error_errno = errno
            _log.error("%s; recording stopped, packets are dropped until close", message)

    def _drain_until_stop(self) -> None:
        while self._items.get() is not STOP:
            self.counters.discarded += 1

    def _finalize(self) -> None:
        """Commit what is held, pad every track to the recording's length, close the files."""
        # Items put by a write() that raced with close() are still recorded.
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                break
            if item is not STOP:
                self._handle(item)
        self.lag_ref = None
        end = self.end_time if self.end_time is not None else self._clock()
        length = round((end - self._origin) * SAMPLE_RATE)
        if self.error is None:
            try:
                for track in self.tracks.values():
                    track.flush()
                length = max([length, *(t.writer.frames for t in self.tracks.values())])
            except OSError as exc:
                self._fail(f"writing the recording failed: {exc}", exc.errno)
        # Every worker reaches this, failed or not, or the others would wait forever.
        length = self._finish.agree(length)
        if self.error is None:
            try:
                for track in self.tracks.values():
                    track.pad_to(length)
            except OSError as exc:
                self._fail(f"writing the recording failed: {exc}", exc.errno)
        for track in self.tracks.values():
            try:
                track.writer.close()
            except OSError as exc:
                self._fail(f"finishing {track.writer.path.name} failed: {exc}", exc.errno)
