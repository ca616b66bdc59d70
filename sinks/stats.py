"""What the recording engine reports about a recording: typed, immutable snapshots.

:meth:`sinks.AudioSink.stats` returns an :class:`EngineStats`; callers read
its fields rather than string keys, so a renamed or missing figure is an
error where it is read, not a silent ``KeyError`` or ``None`` later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["EngineStats", "UserStats", "RecordingFailure"]


@dataclass(frozen=True, slots=True)
class RecordingFailure:
    """The fatal error that stopped a recording: a disk error, or a crashed worker."""

    #: One line, for the log: it may name the file's path.
    message: str
    #: The OS's errno when it gave one (``errno.ENOSPC``: the disk is full), so a
    #: caller can say why in words without the path.
    errno: int | None


@dataclass(frozen=True, slots=True)
class UserStats:
    """One user's track so far."""

    #: Packets decoded and placed on the track.
    packets: int
    #: Packets never received (sequence gaps inside a stream).
    lost: int
    #: Seconds of non-silent decoded audio (:class:`~sinks.talk.TalkMeter`).
    talk_seconds: float


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of one recording's counters (each exact; read one after another, not atomically)."""

    #: Packets given to ``write()``: accepted plus dropped.
    received: int
    #: Packets refused because the worker's queue was full.
    dropped: int
    #: ``dropped / received`` (0.0 before any packet).
    drop_rate: float
    #: Packets decoded and placed on a track.
    decoded: int
    #: Packets never received (sequence gaps inside a stream).
    lost: int
    #: Frames synthesized by packet-loss concealment or FEC.
    concealed: int
    #: Lost frames left silent, not concealed, while the worker was far behind.
    shed: int
    duplicates: int
    #: Packets that came after their slot was committed.
    late: int
    #: Packets libopus could not decode.
    decode_errors: int
    #: Items that were not a usable packet at all (wrong types, bad fields).
    invalid: int
    #: Packets thrown away unprocessed after the recording failed.
    discarded: int
    #: Items accepted but not yet taken off the queue.
    queue_depth: int
    #: Deepest the queue was when one of this recording's items was taken off it.
    queue_high_water: int
    #: Seconds the workers are behind the oldest packet they hold (0 when idle).
    worker_lag: float
    #: The largest lag sampled since the start (seconds).
    worker_lag_max: float
    #: Sampled ``write()`` calls, and their latency percentiles in microseconds
    #: (None before any sample).
    write_samples: int
    write_p50_us: float | None
    write_p99_us: float | None
    #: Worker threads the recording runs on.
    workers: int
    bytes_written: int
    #: Users with a track.
    users: int
    #: Each user's track, by user id.
    per_user: Mapping[int, UserStats]
    #: Why the recording stopped writing, or None while healthy.
    failure: RecordingFailure | None
    closed: bool
    #: Packets dropped because their user's track could not be created yet (out of
    #: file descriptors, say): that user's gap, the others record on.
    untracked: int = 0

    def log_fields(self, names: tuple[str, ...]) -> dict[str, object]:
        """The fields ``names`` as JSON-ready values (a failure as its message)."""
        fields = {name: getattr(self, name) for name in names}
        failure = fields.get("failure")
        if isinstance(failure, RecordingFailure):
            fields["failure"] = failure.message
        return fields
