"""What the receive layer reports: typed, immutable snapshots of its counters.

:class:`ReceiveStats` has one field per counter of
:class:`~bot.voice.receiver.VoiceReceiver`: every datagram fed ends in
``accepted`` or exactly one drop reason, or is ``held`` for now. DAVE
failures are keyed by davey's own error names, an open set, so they are a
mapping rather than fields. :class:`RecordingStats` pairs them with the
engine's :class:`~sinks.EngineStats`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sinks import EngineStats

from .dave import DAVE_FAILURE_PREFIX

__all__ = ("DROP_REASONS", "ReceiveStats", "RecordingStats")

#: Counters that are not drop reasons.
_TALLIES: Final = ("datagrams", "accepted", "held")


@dataclass(frozen=True, slots=True)
class ReceiveStats:
    """A snapshot of one receiver's counters (all 0: nothing received)."""

    #: Datagrams fed to the receiver.
    datagrams: int = 0
    #: Packets the sink took.
    accepted: int = 0
    #: Datagrams waiting now: for their SSRC's user, or for a new session key.
    held: int = 0
    # Drop reasons. Not RTP audio at all, by the datagram's kind:
    rtcp: int = 0
    ip_discovery: int = 0
    not_rtp: int = 0
    too_short: int = 0
    #: An RTP header that does not parse.
    bad_header: int = 0
    #: RTP of a payload type other than Opus.
    not_opus: int = 0
    #: Came before any session key.
    no_key: int = 0
    # Transport decryption refused them:
    truncated: int = 0
    auth_failed: int = 0
    # What transport decryption opened was not a usable payload:
    bad_extension: int = 0
    bad_padding: int = 0
    empty_frame: int = 0
    #: Pushed out of the full hold for unmapped SSRCs.
    unmapped_overflow: int = 0
    #: Still unmapped when the receiver closed.
    unmapped_at_close: int = 0
    #: From a user who opted out.
    excluded: int = 0
    #: Network copies, and packets too old for the duplicate window.
    duplicate: int = 0
    stale: int = 0
    #: The sink's queue was full.
    sink_full: int = 0
    #: Came after the receiver closed.
    closed: int = 0
    #: Frames DAVE could not open, by reason (``dave:NoDecryptorForUser``: 3).
    dave_failures: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_counts(cls, datagrams: int, accepted: int, held: int, reasons: Mapping[str, int]) -> ReceiveStats:
        """The snapshot of these tallies and drop counts keyed by reason (the receiver's own keys).

        A reason with no field here raises ``TypeError``: a new drop reason needs its field.
        """
        dave = {reason: n for reason, n in reasons.items() if reason.startswith(DAVE_FAILURE_PREFIX)}
        others = {reason: n for reason, n in reasons.items() if not reason.startswith(DAVE_FAILURE_PREFIX)}
        return cls(datagrams=datagrams, accepted=accepted, held=held, dave_failures=dave, **others)

    @property
    def dropped(self) -> int:
        """Datagrams dropped, for any reason."""
        return sum(getattr(self, name) for name in DROP_REASONS) + sum(self.dave_failures.values())

    def as_dict(self) -> dict[str, int]:
        """``datagrams``, ``accepted``, ``held`` and every drop reason that occurred, by the
        receiver's keys (DAVE failures under their own): the form the stop log line shows."""
        counts = {name: getattr(self, name) for name in _TALLIES}
        for name in DROP_REASONS:
            value = getattr(self, name)
            if value:
                counts[name] = value
        counts.update(self.dave_failures)
        return counts


#: The drop reasons among :class:`ReceiveStats`'s fields (DAVE failures aside).
DROP_REASONS: Final = tuple(
    f.name for f in dataclasses.fields(ReceiveStats) if f.name not in (*_TALLIES, "dave_failures")
)


@dataclass(frozen=True, slots=True)
class RecordingStats:
    """One recording's counters: the receive layer's and the engine's."""

    receive: ReceiveStats
    engine: EngineStats
