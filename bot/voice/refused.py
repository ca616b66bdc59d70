"""The one error type for "this datagram is refused, and here is why".

Each stage of the receive pipeline that can refuse a datagram raises a
subclass of :class:`DatagramRefused` (:class:`bot.voice.rtp.PayloadError`,
:class:`bot.voice.transport.TransportError`, :class:`bot.voice.dave.DaveError`);
the receiver catches this base alone and counts the drop under ``reason``.
"""

from __future__ import annotations

__all__ = ("DatagramRefused",)


class DatagramRefused(ValueError):
    """A datagram the receive pipeline refuses.

    ``reason`` is the short counter key the drop is counted under in the
    receiver's stats; keep it bounded (no per-datagram details).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
