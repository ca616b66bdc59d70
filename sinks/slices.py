"""Recording slices: one recording's users on one worker thread, their tracks, files and counters.

A recording (:class:`~sinks.sink.AudioSink`) has one :class:`RecordingSlice` per
worker thread of its pool; a user's packets always go to the same slice, so
each track and WAV writer has exactly one owner thread. Every method runs on
that thread. A slice survives bad packets (counted); a disk error is fatal to
its recording but not to the thread: the error is recorded, packets are
counted as discarded, and finishing still makes the files whole.

A track that cannot be *created* (no file descriptor left, no room for its
header) is that one user's loss, not the recording's: the other users' files
are open and fine. Their packets are counted as ``untracked`` and creating the
file is tried again every :data:`OPEN_RETRY` seconds and once more at close;
once it opens, the track places audio at its arrival time like any other, so
the gap is silence and every track still ends at the same sample.

Closing never blocks a worker, which other recordings share: each slice
commits what it holds and offers the length it needs to the recording's
:class:`FinishLine`; the last to offer sends every slice the agreed length;
each pads and closes its files; the last to finish wakes the closer.
"""

from __future__ import annotations

import logging
import os
import pathlib
import threading
from collections.abc import Callable
from typing import Final

from .metrics import WorkerCounters
from .opus import FRAME_SAMPLES, SAMPLE_RATE
from .packet import VoicePacket
from .stats import RecordingFailure
from .talk import TalkMeter
from .track import Backlog, Track
from .wavfile import WavWriter

__all__ = ["RecordingSlice", "FinishLine", "LAG_SAMPLE_EVERY", "OPEN_RETRY"]

_log = logging.getLogger(__name__)

#: A stream whose newest packet is this old (samples) has its reorder window committed.
_HOLD: Final = 6 * FRAME_SAMPLES
#: One packet in this many has its lag (clock minus arrival) measured for ``lag_max``.
LAG_SAMPLE_EVERY: Final = 64
#: Seconds (on the recording's clock) before creating a track that failed is tried again:
#: often enough to lose little once descriptors or space are back, rarely enough that a
#: starved process does not spend itself on failing ``open`` calls (one per packet).
OPEN_RETRY: Final = 1.0


class FinishLine:
    """Where the slices of one recording agree on its length at close, without waiting on each other.

    ``agreed`` is called once, on the thread of the last slice to :meth:`offer`,
    with the longest length offered; ``done`` is set when every slice has :meth:`finished`.
    """

    def __init__(self, slices: int, agreed: Callable[[int], None]) -> None:
        self._lock = threading.Lock()
        self._waiting_for = slices
        self._unfinished = slices
        self._longest = 0
        self._agreed = agreed
        self.done = threading.Event()

    def offer(self, length: int) -> None:
        """Offer ``length`` (frames); the last offer calls ``agreed``."""
        with self._lock:
            self._longest = max(self._longest, length)
            self._waiting_for -= 1
            last = self._waiting_for == 0
        if last:
            self._agreed(self._longest)

    def finished(self) -> None:
        """One slice has closed its files; the last one sets ``done``."""
        with self._lock:
            self._unfinished -= 1
            last = self._unfinished == 0
        if last:
            self.done.set()


class RecordingSlice:
    """The tracks of the users of one recording that one worker thread owns."""

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        channels: int,
        origin: float,
        clock: Callable[[], float],
        finish: FinishLine,
        backlog: Backlog,
        append: bool = False,
    ) -> None:
        self._directory = directory
        self._append = append
        self._channels = channels
        self._origin = origin
        self._clock = clock
        self._finish = finish
        self._backlog = backlog
        #: Written only by the worker thread; readers copy it (dict copy is atomic under the GIL).
        self.tracks: dict[int, Track] = {}
        #: Each track's talk meter, fed by its writer; replaced whole like ``tracks``.
        self.talk: dict[int, TalkMeter] = {}
        self.counters = WorkerCounters()
        #: Deepest the worker's queue was when it took one of this recording's items.
        self.high_water = 0
        #: Largest sampled lag (seconds from a packet's arrival to its processing).
        self.lag_max = 0.0
        self._lag_countdown = LAG_SAMPLE_EVERY
        #: First fatal error; None while healthy.
        self.failure: RecordingFailure | None = None
        #: Packets stamped later than ``clock`` read as they were handled (placed at that reading).
        self.future_arrivals = 0
        #: Set by the sink before it closes: the recording's end on ``clock``.
        self.end_time: float | None = None
        #: True once this slice has committed everything for the close: later items are discarded.
        self.closing = False
        self._synced: dict[int, int] = {}
        #: Users whose track could not be created: when (on ``clock``) to try again.
        self._unopened: dict[int, float] = {}

    def handle(self, user_id: int, packet: VoicePacket | None) -> float | None:
        """Place one packet on its user's track (None: just open the track).

        Returns the packet's arrival time, for the worker's lag.
        """
        counters = self.counters
        counters.dequeued += 1
        if self.failure is not None or self.closing:
            counters.discarded += 1
            return None
        try:
            track = self.tracks.get(user_id)
            if track is None:
                track = self._try_open(user_id)
                if track is None:
                    if packet is not None:
                        counters.untracked += 1
                    return None
            if packet is None:
                return None
            received_at = packet.received_at
            now = self._clock()
            if received_at > now:
                packet, received_at = self._from_the_future(packet, now)
            self._lag_countdown -= 1
            if not self._lag_countdown:
                self._lag_countdown = LAG_SAMPLE_EVERY
                lag = now - received_at
                if lag > self.lag_max:
                    self.lag_max = lag
            track.add(packet)
            return received_at
        except OSError as exc:
            self._write_failed(exc)
        except Exception as exc:  # a malformed item must not stop the recording
            counters.invalid += 1
            if counters.invalid <= 10:
                _log.warning("ignored an unusable packet: %r", exc)
        return None

    def _try_open(self, user_id: int, *, now: float | None = None) -> Track | None:
        """The user's new track, or None when creating its file failed now or lately.

        Only the creation is forgiven here: a write to a file already open that
        fails is the disk's state for everyone and stays fatal (:meth:`_write_failed`).
        """
        now = self._clock() if now is None else now
        retry_at = self._unopened.get(user_id)
        if retry_at is not None and now < retry_at:
            return None
        try:
            track = self._open_track(user_id)
        except OSError as exc:
            self.counters.open_failures += 1
            self._unopened[user_id] = now + OPEN_RETRY
            if retry_at is None:
                # Once per user, without the path: the reason is what an operator acts on.
                _log.warning(
                    "could not create the track of user %s (%s); their audio is dropped, the others "
                    "record on, and it is tried again every %.0f s",
                    user_id, os.strerror(exc.errno) if exc.errno else type(exc).__name__, OPEN_RETRY,
                )
            return None
        if retry_at is not None:
            del self._unopened[user_id]
            _log.warning("the track of user %s could be created at last; the audio before is silence",
                         user_id)
        return track

    def _open_track(self, user_id: int) -> Track:
        if not isinstance(user_id, int):
            raise TypeError(f"user id must be an int, not {type(user_id).__name__}")
        meter = TalkMeter(self._channels)
        path = self._directory / f"{user_id}.wav"
        writer = WavWriter(path, self._channels, SAMPLE_RATE, on_samples=meter.feed,
                           append=self._append and path.exists())
        track = Track(
            user_id, writer, channels=self._channels, origin=self._origin, counters=self.counters,
            backlog=self._backlog,
        )
        self.talk = {**self.talk, user_id: meter}
        self.tracks = {**self.tracks, user_id: track}
        self._synced[user_id] = -1
        return track

    def commit_quiet(self) -> bool:
        """Commit reorder windows whose stream went quiet; return whether any still hold packets."""
        if self.failure is not None or self.closing:
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
            self._write_failed(exc)
        return holding

    def sync(self) -> None:
        """Bring the WAV header of every track that grew up to date (crash safety)."""
        if self.failure is not None:
            return
        synced = self._synced
        try:
            for user_id, track in self.tracks.items():
                frames = track.writer.frames
                if synced[user_id] != frames:
                    track.writer.sync_header()
                    synced[user_id] = frames
        except OSError as exc:
            self._write_failed(exc)

    def _from_the_future(self, packet: VoicePacket, now: float) -> tuple[VoicePacket, float]:
        """A packet said to arrive after `now`: it arrived by now at the latest.

        Only a clock step can do this (the receive layer converts the kernel's
        wall-clock stamps; NTP, a VM resume or ``date -s`` moved the wall clock
        in between). Trusted, the stamp re-anchored the stream that far on and
        the speaker lost as many seconds.
        """
        self.future_arrivals += 1
        if self.future_arrivals == 1:
            _log.warning("a packet's arrival time is %.3f s ahead of the clock (a clock step?); placed at now",
                         packet.received_at - now)
        return VoicePacket(packet.sequence, packet.timestamp, packet.opus, now, packet.ssrc), now

    def fail(self, message: str, errno: int | None = None) -> None:
        """Stop the recording with ``message``: nothing more is written, the files are still finished."""
        if self.failure is None:
            self.failure = RecordingFailure(message, errno)
            _log.error("%s; recording stopped, packets are dropped until close", message)

    def _write_failed(self, exc: OSError) -> None:
        self.fail(f"writing the recording failed: {exc}", exc.errno)

    def wind_up(self) -> None:
        """First step of the close: commit everything held and offer the length this slice needs."""
        end = self.end_time if self.end_time is not None else self._clock()
        length = round((end - self._origin) * SAMPLE_RATE)
        try:
            if self.failure is None and not self.closing:
                # A user whose file could not be created gets one last try, so their
                # track exists (silent where it was missing) if the cause has passed.
                for user_id in list(self._unopened):
                    self._try_open(user_id, now=float("inf"))
                for track in self.tracks.values():
                    track.flush()
                length = max([length, *(t.writer.frames for t in self.tracks.values())])
        except OSError as exc:
            self._write_failed(exc)
        finally:
            self.closing = True
            # Every slice offers, failed or not, or the recording would never finish.
            self._finish.offer(length)

    def finish(self, length: int) -> None:
        """Last step of the close: pad every track to ``length`` frames and close the files."""
        try:
            if self.failure is None:
                try:
                    for track in self.tracks.values():
                        track.pad_to(length)
                except OSError as exc:
                    self._write_failed(exc)
            for track in self.tracks.values():
                try:
                    track.writer.close()
                except OSError as exc:
                    self.fail(f"finishing {track.writer.path.name} failed: {exc}", exc.errno)
        finally:
            self._finish.finished()
