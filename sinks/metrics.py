"""Counters of the recording engine, each with exactly one writer thread.

A recording's slice on a worker owns its :class:`WorkerCounters` (plain
ints, only that worker writes them). Packets accepted and dropped by
``AudioSink.write`` are counted by the producer threads, which may be
several: each thread gets its own cell in a :class:`ThreadCounter`, so every
``+= 1`` has a single writer and no lock is needed; readers sum the cells.
"""

from __future__ import annotations

import threading

__all__ = ["WorkerCounters", "ThreadCounter"]


class WorkerCounters:
    """What the worker did with the packets it took off the queue."""

    __slots__ = (
        "dequeued", "decoded", "lost", "concealed", "shed", "duplicates", "late",
        "decode_errors", "invalid", "discarded", "untracked", "open_failures",
    )

    def __init__(self) -> None:
        #: Items taken off the queue (packets and registrations).
        self.dequeued = 0
        #: Packets decoded and placed on a track.
        self.decoded = 0
        #: Packets never received (sequence gaps inside a stream).
        self.lost = 0
        #: Frames synthesized by packet-loss concealment or FEC.
        self.concealed = 0
        #: Lost frames left silent, not concealed, while the worker was far behind.
        self.shed = 0
        self.duplicates = 0
        #: Packets that came after their slot was committed.
        self.late = 0
        #: Packets libopus could not decode.
        self.decode_errors = 0
        #: Items that were not a usable packet at all (wrong types, bad fields).
        self.invalid = 0
        #: Packets thrown away unprocessed after a fatal disk error.
        self.discarded = 0
        #: Packets dropped because their user's track could not be created (yet).
        self.untracked = 0
        #: Attempts to create a user's track that failed (no descriptor, no room).
        self.open_failures = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}


class ThreadCounter:
    """A counter incremented from several threads without a lock."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[int, list[int]] = {}

    def increment(self) -> None:
        """Add one, in the calling thread's own cell."""
        ident = threading.get_ident()
        cell = self._cells.get(ident)
        if cell is None:
            # setdefault is one atomic dict operation under the GIL.
            cell = self._cells.setdefault(ident, [0])
        cell[0] += 1

    @property
    def value(self) -> int:
        """The total over all threads."""
        return sum(cell[0] for cell in list(self._cells.values()))
