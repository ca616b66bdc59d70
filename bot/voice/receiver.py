"""The per-datagram receive pipeline, run on discord.py's socket reader thread.

classify -> parse RTP -> transport decrypt -> strip extension body and padding
-> SSRC -> user (or hold) -> opt-out filter -> duplicate filter -> DAVE decrypt
-> ``sink.write``.

Nothing here blocks or raises: every datagram ends in exactly one counter,
either ``accepted`` (the sink took it) or a drop reason, or sits in a
bounded hold (``held``) until it reaches one of those: the hold for unmapped
SSRCs, or, while a new session key is awaited, the hold for datagrams the
current key cannot open.
Counters are written by the socket thread only (and by :meth:`close` once that
thread is shut out by the lock); :meth:`stats` copies them from any thread
into a :class:`~bot.voice.stats.ReceiveStats`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Protocol, Sequence

from sinks import EngineStats, VoicePacket

from .dave import DaveDecryptor
from .discordpy import DaveState
from .duplicates import DuplicateFilter
from .reader import takes_arrival
from .refused import DatagramRefused
from .rtp import OPUS_PAYLOAD_TYPE, DatagramKind, RtpHeader, classify, strip_payload
from .ssrc_map import SsrcMap
from .stats import ReceiveStats
from .transport import AUTH_FAILED, TransportDecryptor, create_decryptor

__all__ = ("PacketSink", "VoiceReceiver")

_log = logging.getLogger(__name__)

_KIND_REASONS = {kind: kind.value for kind in DatagramKind if kind is not DatagramKind.RTP}
#: Datagrams kept while a new key is awaited: about 1 s of 10 speakers, 0.1 s of 100.
SEALED_HOLD = 512


class PacketSink(Protocol):
    """What the receiver writes to (``sinks.AudioSink`` fits)."""

    def write(self, user_id: int, packet: VoicePacket) -> bool:
        """Queue one packet; O(1), never blocks; ``False`` means dropped."""
        ...

    def stats(self) -> EngineStats:
        """The sink's own counters."""
        ...


class _Held:
    """A transport-decrypted frame waiting for its SSRC's user id."""

    __slots__ = ("sequence", "timestamp", "ssrc", "frame", "received_at")

    def __init__(self, sequence: int, timestamp: int, ssrc: int, frame: bytes, received_at: float) -> None:
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.frame = frame
        self.received_at = received_at


class VoiceReceiver:
    """Receives one voice connection's datagrams into a sink.

    :param sink: where decrypted Opus packets go, keyed by user id.
    :param dave_state: holder of ``dave_session`` / ``dave_protocol_version``
        (discord.py's ``VoiceConnectionState``).
    :param ssrc_map: SSRC -> user map the voice websocket hook keeps current.
    :param should_record: called with a user id before DAVE decryption;
        ``False`` drops the packet (counted as ``excluded``). Runs on the
        socket thread, so it must be cheap (a set lookup).
    :param clock: arrival clock stamped on each packet (``received_at``).
    """

    __slots__ = (
        "_sink",
        "_dave",
        "_ssrc_map",
        "_should_record",
        "_clock",
        "_transport",
        "_duplicates",
        "_counts",
        "_datagrams",
        "_accepted",
        "_lock",
        "_closed",
        "_awaiting_key",
        "_sealed",
    )

    def __init__(
        self,
        sink: PacketSink,
        dave_state: DaveState,
        ssrc_map: SsrcMap[Any],
        *,
        should_record: Callable[[int], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._dave = DaveDecryptor(dave_state)
        self._ssrc_map = ssrc_map
        self._should_record = should_record
        self._clock = clock
        self._transport: TransportDecryptor | None = None
        self._duplicates = DuplicateFilter()
        #: Drop reasons; the two counts every datagram touches are plain attributes (cheaper).
        self._counts: dict[str, int] = {}
        self._datagrams = 0
        self._accepted = 0
        # Held only while one datagram runs; lets close() shut the socket
        # thread out before it flushes the hold.
        self._lock = threading.Lock()
        self._closed = False
        self._awaiting_key = False
        #: (datagram, arrival) that failed authentication while a new key was awaited.
        self._sealed: deque[tuple[bytes, float]] = deque()

    @property
    def sink(self) -> PacketSink:
        """The sink packets are written to."""
        return self._sink

    def set_transport(self, mode: str, secret_key: bytes | Sequence[int]) -> None:
        """Install the key of a SESSION_DESCRIPTION (first connect or voice reconnect),
        then run the datagrams held by :meth:`await_new_key` through it (with their
        original arrival times).

        Raises ``transport.UnsupportedModeError`` for a mode this layer cannot open.
        """
        transport = create_decryptor(mode, secret_key)
        with self._lock:
            self._transport = transport
            self._awaiting_key = False
            sealed, self._sealed = self._sealed, deque()
            for data, received_at in sealed:
                self._receive(data, received_at)
        _log.debug("voice receive transport set to %s (%d held datagrams released)", mode, len(sealed))

    def await_new_key(self) -> None:
        """A new voice session is being negotiated. Its media can arrive before its
        key does (UDP overtakes the websocket): until :meth:`set_transport`, keep up to
        :data:`SEALED_HOLD` datagrams the current key cannot open instead of dropping them."""
        with self._lock:
            self._awaiting_key = True

    @takes_arrival
    def on_datagram(self, data: bytes, received_at: float | None = None) -> None:
        """Socket-listener callback: run one datagram through the pipeline.

        ``received_at`` is its arrival as the socket reader knows it (the
        kernel's, on ``time.monotonic()``'s clock: see :mod:`bot.voice.reader`);
        without it, the receiver's clock is read now.
        """
        with self._lock:
            self._datagrams += 1
            if self._closed:
                self._count("closed")
                return
            self._receive(data, self._clock() if received_at is None else received_at)

    def _count(self, reason: str, n: int = 1) -> None:
        counts = self._counts
        counts[reason] = counts.get(reason, 0) + n

    def _receive(self, data: bytes, received_at: float) -> None:
        kind = classify(data)
        if kind is not DatagramKind.RTP:
            self._count(_KIND_REASONS[kind])
            return
        header = RtpHeader.parse(data)
        if header is None:
            self._count("bad_header")
            return
        if header.payload_type != OPUS_PAYLOAD_TYPE:
            self._count("not_opus")
            return
        transport = self._transport
        if transport is None:
            self._count("no_key")
            return
        try:
            frame = strip_payload(header, transport.decrypt(data, header))
        except DatagramRefused as exc:
            if self._awaiting_key and exc.reason == AUTH_FAILED:
                self._hold_sealed(data, received_at)
            else:
                self._count(exc.reason)
            return

        ssrc_map = self._ssrc_map
        if ssrc_map.held:
            for user_id, held in ssrc_map.release():
                self._deliver_held(user_id, held)
        ssrc = header.ssrc
        user_id = ssrc_map.lookup(ssrc)
        if user_id is None:
            dropped = ssrc_map.dropped
            ssrc_map.hold(ssrc, _Held(header.sequence, header.timestamp, ssrc, frame, received_at))
            if ssrc_map.dropped != dropped:
                self._count("unmapped_overflow", ssrc_map.dropped - dropped)
            return
        if ssrc_map.held:
            for held in ssrc_map.take(ssrc):
                self._deliver_held(user_id, held)
        self._deliver(user_id, header.sequence, header.timestamp, ssrc, frame, received_at)

    def _hold_sealed(self, data: bytes, received_at: float) -> None:
        if len(self._sealed) >= SEALED_HOLD:
            self._sealed.popleft()
            self._count(AUTH_FAILED)
        self._sealed.append((data, received_at))

    def _deliver_held(self, user_id: int, item: _Held) -> None:
        self._deliver(user_id, item.sequence, item.timestamp, item.ssrc, item.frame, item.received_at)

    def _deliver(self, user_id: int, sequence: int, timestamp: int, ssrc: int, frame: bytes,
                 received_at: float) -> None:
        """Filter, drop copies, DAVE-decrypt and write one frame whose user is known.

        Takes the fields rather than a :class:`_Held`: most frames are never held,
        and building one per datagram cost the socket thread an object each.
        """
        should_record = self._should_record
        if should_record is not None and not should_record(user_id):
            self._count("excluded")
            return
        # Before DAVE: davey refuses a nonce twice, so a network copy would
        # otherwise be counted as a DAVE failure (see duplicates.py).
        refused = self._duplicates.check(ssrc, sequence)
        if refused is not None:
            self._count(refused)
            return
        try:
            opus = self._dave.decrypt(user_id, frame)
        except DatagramRefused as exc:
            self._count(exc.reason)
            return
        if self._sink.write(user_id, VoicePacket(sequence, timestamp, opus, received_at, ssrc)):
            self._accepted += 1
        else:
            self._count("sink_full")

    def close(self) -> None:
        """Stop taking datagrams and flush the hold (mapped SSRCs to the sink, the rest counted).

        Call after the socket listener is removed; a datagram still in flight
        finishes first (the lock), later ones are counted as ``closed``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._sealed:
                self._count(AUTH_FAILED, len(self._sealed))
                self._sealed.clear()
            for user_id, item in self._ssrc_map.drain():
                if user_id is None:
                    self._count("unmapped_at_close")
                else:
                    self._deliver_held(user_id, item)

    def stats(self) -> ReceiveStats:
        """Snapshot of the counters: datagrams fed, accepted, held now, and the drops by reason."""
        return ReceiveStats.from_counts(
            self._datagrams, self._accepted, self._ssrc_map.held + len(self._sealed), dict(self._counts),
        )
