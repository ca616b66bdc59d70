"""Where one RTP stream's samples go on the recording timeline.

Sample 0 of the recording is the sink's creation time. A talk burst starts
where its first packet arrived; after that, RTP timestamp deltas place each
frame (exact, jitter-free). Two things make that drift from the arrival
clock: the first packet's own network delay, and the sender's sample clock
running at a slightly different rate from ours. So every packet's offset
(arrival position minus RTP-predicted position) is compared with the anchor;
the *minimum* offset over the last second is the packets that met the
least network delay, and network jitter only ever makes offsets larger.
When that minimum leaves ``+-tolerance`` the anchor moves by it: clock
drift is undone each time it reaches ``tolerance``, so error never
accumulates. Before any of a burst is placed there is nothing to tolerate:
``settle`` moves the anchor to every faster packet, however little faster,
so a late first packet never leaves the anchor near the edge of the
tolerance, where ordinary jitter would later move it back across audio
already written (cutting the frame it lands on).
"""

from __future__ import annotations

from typing import Final

from .opus import SAMPLE_RATE
from .packet import ts_delta

__all__ = ["StreamTimeline", "DEFAULT_TOLERANCE", "DEFAULT_BLOCK"]

#: 10 ms: the largest correction made at once (half the 20 ms budget).
DEFAULT_TOLERANCE: Final = SAMPLE_RATE // 100
#: Offsets per block of the sliding minimum; two blocks (about 1 s of audio) make the window.
DEFAULT_BLOCK: Final = 25
_NONE: Final = 1 << 62


class StreamTimeline:
    """Maps RTP timestamps of one stream to sample positions (ints, 48 kHz).

    ``position(ts)`` is exact arithmetic from the current anchor; ``observe``
    feeds arrival positions in and moves the anchor when the arrival clock
    disagrees (``settle`` does, before anything is placed, for any earlier
    arrival); ``restart`` starts a new talk burst at its arrival position.
    """

    __slots__ = ("_ts", "_pos", "_cur_min", "_prev_min", "_count", "_tolerance", "_block", "shifts")

    def __init__(
        self, timestamp: int, arrival: int, *,
        tolerance: int = DEFAULT_TOLERANCE, block: int = DEFAULT_BLOCK,
    ) -> None:
        self._tolerance = tolerance
        self._block = block
        #: How many times the anchor moved after a burst started (diagnostics).
        self.shifts = 0
        self.restart(timestamp, arrival)

    def restart(self, timestamp: int, arrival: int) -> None:
        """Anchor a new talk burst: ``timestamp`` lands at ``arrival``."""
        self._ts = timestamp
        self._pos = arrival
        self._cur_min = 0
        self._prev_min = _NONE
        self._count = 1

    def position(self, timestamp: int) -> int:
        """The sample position of the frame with RTP ``timestamp``."""
        return self._pos + ts_delta(timestamp, self._ts)

    def rebase(self, timestamp: int) -> None:
        """Re-express the anchor at ``timestamp`` (same mapping; keeps deltas small across wraps)."""
        self._pos += ts_delta(timestamp, self._ts)
        self._ts = timestamp

    def observe(self, timestamp: int, arrival: int) -> int:
        """Account one packet's arrival while the burst is being placed; return the anchor shift made (0 mostly)."""
        return self._account(timestamp, arrival, self._tolerance)

    def settle(self, timestamp: int, arrival: int) -> int:
        """Account one arrival before any of the burst is placed: an earlier one moves the anchor to it."""
        return self._account(timestamp, arrival, 0)

    def _account(self, timestamp: int, arrival: int, early_slack: int) -> int:
        offset = arrival - self._pos - ts_delta(timestamp, self._ts)
        if offset < self._cur_min:
            self._cur_min = offset
        self._count += 1
        if self._count >= self._block:
            self._prev_min = self._cur_min
            self._cur_min = _NONE
            self._count = 0
        low = self._cur_min if self._cur_min < self._prev_min else self._prev_min
        # Positive shifts wait for a full window (prev block set): at burst start
        # the anchor packet's own offset 0 is in it until then.
        if low < -early_slack or (self._tolerance < low < _NONE):
            self._pos += low
            if self._cur_min != _NONE:
                self._cur_min -= low
            if self._prev_min != _NONE:
                self._prev_min -= low
            self.shifts += 1
            return low
        return 0
