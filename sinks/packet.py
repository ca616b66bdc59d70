"""One received voice packet, and RTP sequence/timestamp arithmetic across wraps."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VoicePacket", "seq_delta", "ts_delta"]


@dataclass(slots=True)
class VoicePacket:
    """An Opus frame as it came off the network, already decrypted.

    Not frozen: the receive thread builds one per datagram, and a frozen
    dataclass's ``__init__`` costs several times more.
    """

    #: RTP sequence number (16-bit, wraps).
    sequence: int
    #: RTP timestamp in 48 kHz samples (32-bit, wraps, random start per SSRC).
    timestamp: int
    #: The Opus frame.
    opus: bytes
    #: When the packet arrived, on the clock given to the sink.
    received_at: float
    #: The RTP stream it came on; a new SSRC for the same user is a reconnect.
    ssrc: int


def seq_delta(a: int, b: int) -> int:
    """Signed distance from 16-bit sequence number ``b`` to ``a``, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_delta(a: int, b: int) -> int:
    """Signed distance from 32-bit RTP timestamp ``b`` to ``a``."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000
