"""Per-SSRC duplicate filter in front of DAVE: an RFC 3711-style sliding window of sequence numbers.

The network may deliver a datagram twice. davey refuses a nonce it has seen,
so without this filter a copy would be counted as a DAVE failure, hiding real
key trouble behind network noise. The filter runs on packets whose header
passed transport authentication (only the voice server can write those), so
a forged header cannot mark sequence numbers as seen.

For each SSRC it keeps the highest sequence number seen and a bit mask of the
:data:`WINDOW` numbers below it. A packet is

* new: ahead of the highest (modulo 2**16), or behind it within the window and
  not yet seen; it is marked and passes;
* ``duplicate``: behind within the window and already seen;
* ``stale``: further behind than the window but less than
  :data:`RESTART_JUMP`. Whether it is a copy cannot be told any more, and it
  is useless either way: the sink's reorder window (5 packets) gave up on it
  long ago and would count it late, and DAVE refuses a replayed nonce;
* a restarted sender: :data:`RESTART_JUMP` or more behind. The sink treats a
  jump that large as a new stream, so the window starts over there and the
  packet passes; if it was an old datagram replayed, DAVE refuses it
  (``dave:DecryptionFailed``), and with DAVE off the sink starts a new stream
  as it would for any such jump.

Words: a *replay* is an old datagram sent again (by the network or anyone who
captured it); held packets handed on once their SSRC is mapped or their key
arrives are *released* (:mod:`bot.voice.ssrc_map`, :mod:`bot.voice.receiver`).

Per packet: one dict lookup and a few int operations; state is allocated
only for an SSRC's first packet.
"""

from __future__ import annotations

import logging
from typing import Final

from sinks.track import MAX_SEQ_JUMP

__all__ = ("DUPLICATE", "RESTART_JUMP", "STALE", "WINDOW", "DuplicateFilter")

_log = logging.getLogger(__name__)

#: Sequence numbers remembered below the highest one (2.56 s of 20 ms frames).
WINDOW: Final = 128
#: A backward jump this large is a restarted sender: the sink's own rule for a new stream.
RESTART_JUMP: Final = MAX_SEQ_JUMP
#: Counter key of a packet already seen.
DUPLICATE: Final = "duplicate"
#: Counter key of a packet too old for the window.
STALE: Final = "stale"

_SEQ_MASK: Final = 0xFFFF
_HALF: Final = 0x8000
_WINDOW_BITS: Final = (1 << WINDOW) - 1


class _Window:
    """The highest sequence number of one SSRC and which of the :data:`WINDOW` below it were seen."""

    __slots__ = ("top", "seen")

    def __init__(self, sequence: int) -> None:
        self.top = sequence
        #: Bit ``i`` set: sequence number ``top - i`` was seen.
        self.seen = 1


class DuplicateFilter:
    """Tells new packets from copies and stale ones, per SSRC.

    Used by the socket thread only.

    :param max_streams: SSRCs remembered; when a new one comes the one seen
        first is forgotten (a recording sees a handful per speaker).
    """

    __slots__ = ("_windows", "_max_streams")

    def __init__(self, *, max_streams: int = 1024) -> None:
        self._windows: dict[int, _Window] = {}
        self._max_streams = max_streams

    def check(self, ssrc: int, sequence: int) -> str | None:
        """Mark ``sequence`` of ``ssrc`` as seen and return ``None``, or return why it must be dropped
        (:data:`DUPLICATE` or :data:`STALE`)."""
        window = self._windows.get(ssrc)
        if window is None:
            windows = self._windows
            if len(windows) >= self._max_streams:
                del windows[next(iter(windows))]
            windows[ssrc] = _Window(sequence)
            return None
        ahead = (sequence - window.top) & _SEQ_MASK
        if ahead == 0:
            return DUPLICATE
        if ahead < _HALF:
            window.seen = ((window.seen << ahead) | 1) & _WINDOW_BITS if ahead < WINDOW else 1
            window.top = sequence
            return None
        behind = _SEQ_MASK + 1 - ahead
        if behind < WINDOW:
            bit = 1 << behind
            if window.seen & bit:
                return DUPLICATE
            window.seen |= bit
            return None
        if behind < RESTART_JUMP:
            return STALE
        _log.debug("ssrc %d: sequence went back by %d, window restarted", ssrc, behind)
        window.top = sequence
        window.seen = 1
        return None
