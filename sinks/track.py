"""One user's recorded track: reorder window, Opus decoding, loss handling, placement.

A :class:`Track` belongs to the sink's worker thread alone. Packets come in
arrival order; each stream (one SSRC) keeps them in a small reorder window
keyed by extended sequence number and commits them in sequence order:
immediately when the next expected one is there, otherwise when the window
holds more than ``window`` packets or nothing new came for a while. The first
packets of a stream, and of a burst re-anchored after silence, wait for a full
window, so a delayed anchor packet is corrected before any audio is placed. A commit
decodes the frame and appends it to the WAV at the position the stream's
:class:`~sinks.timeline.StreamTimeline` gives it, filling any hole before it
with concealment (lost packets: PLC, then the last lost frame rebuilt from
the next packet's FEC data) or silence (nobody spoke).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Final, Protocol

import numpy as np

from .metrics import WorkerCounters
from .opus import FRAME_SAMPLES, SAMPLE_RATE, SILENCE_FRAME, OpusDecoder, OpusError
from .packet import VoicePacket, seq_delta
from .timeline import DEFAULT_TOLERANCE, StreamTimeline

__all__ = ["Track", "PcmWriter", "Backlog", "REORDER_WINDOW", "MAX_SEQ_JUMP"]

_log = logging.getLogger(__name__)

#: Packets a stream may hold back waiting for a missing one (100 ms).
REORDER_WINDOW: Final = 5
#: Lost frames worth concealing; longer holes become silence (PLC fades out anyway).
_MAX_PLC_FRAMES: Final = 5
#: A sequence jump this large is a restarted sender, not loss.
MAX_SEQ_JUMP: Final = 3000
#: An arrival gap this long (samples) may be silence: the burst may be re-anchored.
_BURST_GAP: Final = 3 * FRAME_SAMPLES
#: Silence frames a Discord client sends when its speaker stops, before it goes quiet.
_PAUSE_FRAMES: Final = 5
#: How far (samples) a frame's RTP-predicted position may lie from its own
#: arrival. Honest frames land at or just before arrival (network delay), or
#: as far off as the receiving thread stalled (packets queue in the socket
#: buffer, then arrive together); past this the timestamp lies (a buggy or
#: hostile sender) and the arrival clock wins. Trusted, one such timestamp
#: placed its frame up to 2**31 samples (12 hours) on and filled the gap
#: with silence: gigabytes of WAV from one packet.
_MAX_OFFSET: Final = 10 * SAMPLE_RATE
#: How far (samples) a track may run behind its timeline rather than lose speech.
#: When the anchor moves back while someone talks (the packets it was set by came
#: late, then faster ones showed it), the next frame's place is already written:
#: up to this much, the frame is written whole just after, and the next silence
#: or gap is that much shorter; only what lies beyond it is cut from the frame.
#: 10 ms: with the timeline's 10 ms tolerance, the 20 ms alignment budget.
_MAX_SLIP: Final = DEFAULT_TOLERANCE
_SEEN_RING: Final = 128
_DECODE_FAILURES: Final = (OpusError, TypeError, ctypes.ArgumentError)


class PcmWriter(Protocol):
    """What a track needs from its file (``sinks.wavfile.WavWriter``)."""

    @property
    def frames(self) -> int: ...
    def append(self, pcm: np.ndarray) -> None: ...
    def append_silence(self, frames: int) -> None: ...


class Backlog:
    """Whether the worker that owns a set of tracks is far behind (it sets ``deep``).

    Concealing a lost frame costs about what decoding one does. When a worker
    is far behind, most gaps are packets the sink itself dropped for want of
    queue room, and concealing them spent the time it needed to catch up, so a
    worker that fell behind stayed behind. While ``deep``, gaps are silence.
    """

    __slots__ = ("deep",)

    def __init__(self) -> None:
        self.deep = False


class _Stream:
    """State of one SSRC: a reconnect starts a new one on the same track."""

    __slots__ = (
        "ssrc", "decoder", "timeline", "highest", "next_seq", "pending", "seen", "last_arrival", "hold",
        "talking",
    )

    def __init__(self, packet: VoicePacket, arrival: int, channels: int) -> None:
        self.ssrc = packet.ssrc
        self.decoder = OpusDecoder(channels)
        self.timeline = StreamTimeline(packet.timestamp & 0xFFFF_FFFF, arrival)
        #: Highest extended sequence number seen (sequence numbers unwrapped).
        self.highest = packet.sequence & 0xFFFF
        #: Extended sequence number of the next packet to commit; None before the first commit.
        self.next_seq: int | None = None
        self.pending: dict[int, VoicePacket] = {}
        #: ext & mask -> ext for recently received packets: finds duplicates in O(1).
        self.seen = [-1] * _SEEN_RING
        self.last_arrival = arrival
        #: While True nothing commits until the window is full: at the start of a stream or
        #: of a re-anchored burst, the next few arrivals show whether the anchor packet
        #: itself was delayed (the timeline corrects it) before any audio is placed.
        self.hold = True
        #: Whether the newest packet (``highest``) carried speech rather than the silence frame.
        self.talking = packet.opus != SILENCE_FRAME


def _account(stream: _Stream, ts: int, arrival: int) -> None:
    # While held, none of the burst is placed yet: the anchor may follow any faster packet.
    if stream.hold:
        stream.timeline.settle(ts, arrival)
    else:
        stream.timeline.observe(ts, arrival)


class Track:
    """One user's audio on the recording timeline, written to one file."""

    __slots__ = (
        "user_id", "writer", "packets", "lost", "_channels", "_origin", "_counters",
        "_backlog", "_window", "_stream", "_retired_ssrc",
    )

    def __init__(
        self,
        user_id: int,
        writer: PcmWriter,
        *,
        channels: int,
        origin: float,
        counters: WorkerCounters,
        backlog: Backlog,
        window: int = REORDER_WINDOW,
    ) -> None:
        self.user_id = user_id
        self.writer = writer
        #: This user's packets decoded into the track, and sequence numbers never received.
        self.packets = 0
        self.lost = 0
        self._channels = channels
        self._origin = origin
        self._counters = counters
        self._backlog = backlog
        self._window = window
        self._stream: _Stream | None = None
        self._retired_ssrc: int | None = None

    @property
    def pending(self) -> int:
        """Packets held in the reorder window."""
        return len(self._stream.pending) if self._stream is not None else 0

    @property
    def last_arrival(self) -> int | None:
        """Arrival position (samples) of the newest packet of the current stream."""
        return self._stream.last_arrival if self._stream is not None else None

    def add(self, packet: VoicePacket) -> None:
        """Take one packet: reorder, then commit whatever is ready."""
        seq = packet.sequence & 0xFFFF
        ts = packet.timestamp & 0xFFFF_FFFF
        arrival = round((packet.received_at - self._origin) * SAMPLE_RATE)
        counters = self._counters
        stream = self._stream
        if stream is None or packet.ssrc != stream.ssrc:
            if stream is not None and packet.ssrc == self._retired_ssrc:
                counters.late += 1  # a straggler from before the reconnect
                return
            stream = self._new_stream(packet, arrival)
            ext = stream.highest
        else:
            delta = seq_delta(seq, stream.highest & 0xFFFF)
            if not -MAX_SEQ_JUMP < delta < MAX_SEQ_JUMP:
                _log.debug("user %s: sequence jumped by %d, new stream", self.user_id, delta)
                stream = self._new_stream(packet, arrival)
                ext = stream.highest
            else:
                ext = stream.highest + delta
                seen = stream.seen
                slot = ext % _SEEN_RING
                if seen[slot] == ext:
                    counters.duplicates += 1
                    return
                if stream.next_seq is not None and ext < stream.next_seq:
                    counters.late += 1
                    return
                seen[slot] = ext
                if delta > 0:
                    stream.highest = ext
                    # Right after speech, a gap is the network holding packets back, not a
                    # pause: a speaker who stops sends _PAUSE_FRAMES silence frames first, so
                    # fewer missing packets cannot hide one. RTP time places the packet; a new
                    # anchor at the late arrival misplaced the rest of the sentence, and the
                    # next on-time packet cut a frame to undo it.
                    paused = not stream.talking or delta > _PAUSE_FRAMES
                    if paused and arrival - stream.last_arrival > _BURST_GAP:
                        self._maybe_new_burst(stream, ts, arrival)
                    else:
                        _account(stream, ts, arrival)
                    stream.last_arrival = arrival
                    stream.talking = packet.opus != SILENCE_FRAME
                else:
                    _account(stream, ts, arrival)
        stream.pending[ext] = packet
        self._commit_ready(stream)

    def flush(self) -> None:
        """Commit every held packet (idle stream, or closing)."""
        stream = self._stream
        if stream is None:
            return
        pending = stream.pending
        stream.hold = False
        while pending:
            ext = min(pending)
            self._commit(stream, ext, pending.pop(ext))

    def pad_to(self, frames: int) -> None:
        """Append silence so the track is ``frames`` long (no-op if it is already)."""
        missing = frames - self.writer.frames
        if missing > 0:
            self.writer.append_silence(missing)

    def _new_stream(self, packet: VoicePacket, arrival: int) -> _Stream:
        if self._stream is not None:
            self.flush()
            self._retired_ssrc = self._stream.ssrc if self._stream.ssrc != packet.ssrc else None
        stream = _Stream(packet, arrival, self._channels)
        stream.seen[stream.highest % _SEEN_RING] = stream.highest
        self._stream = stream
        return stream

    def _maybe_new_burst(self, stream: _Stream, ts: int, arrival: int) -> None:
        # After a silence, RTP time may or may not have advanced with real time:
        # when it disagrees with the arrival clock, the arrival clock wins.
        if abs(arrival - stream.timeline.position(ts)) > DEFAULT_TOLERANCE:
            self.flush()
            stream.timeline.restart(ts, arrival)
            stream.hold = True
        else:
            _account(stream, ts, arrival)

    def _commit_ready(self, stream: _Stream) -> None:
        pending = stream.pending
        while pending:
            nxt = stream.next_seq
            if not stream.hold and nxt in pending:
                self._commit(stream, nxt, pending.pop(nxt))
            elif len(pending) > self._window:
                stream.hold = False
                ext = min(pending)
                self._commit(stream, ext, pending.pop(ext))
            else:
                return

    def _commit(self, stream: _Stream, ext: int, packet: VoicePacket) -> None:
        counters = self._counters
        writer = self.writer
        decoder = stream.decoder
        ts = packet.timestamp & 0xFFFF_FFFF
        lost = ext - stream.next_seq if stream.next_seq is not None else 0
        stream.next_seq = ext + 1
        pos = stream.timeline.position(ts)
        arrival = round((packet.received_at - self._origin) * SAMPLE_RATE)
        if abs(pos - arrival) > _MAX_OFFSET:
            _log.debug("user %s: timestamp of seq %d is %d samples off its arrival, re-anchored",
                       self.user_id, packet.sequence, pos - arrival)
            stream.timeline.restart(ts, arrival)
            pos = arrival
        stream.timeline.rebase(ts)
        if lost > 0:
            counters.lost += lost
            self.lost += lost
        gap = pos - writer.frames
        if gap > 0:
            self._fill(decoder, gap, lost, packet.opus)
        try:
            pcm = decoder.decode(packet.opus)
        except _DECODE_FAILURES as exc:
            counters.decode_errors += 1
            _log.debug("user %s: undecodable packet seq %d: %s", self.user_id, packet.sequence, exc)
            return
        counters.decoded += 1
        self.packets += 1
        if gap < -_MAX_SLIP:
            cut = -gap - _MAX_SLIP
            if cut >= len(pcm):
                return  # entirely before what the slip allows (anchor moved far back)
            pcm = pcm[cut:]
        writer.append(pcm)

    def _fill(self, decoder: OpusDecoder, gap: int, lost: int, next_opus: bytes) -> None:
        """Fill ``gap`` samples before the packet being committed."""
        writer = self.writer
        end = writer.frames + gap
        if lost > 0 and self._backlog.deep:
            self._counters.shed += lost
        elif lost > 0:
            # Time order: PLC continues the audio before the hole, silence if the
            # hole is long, then the last lost frame rebuilt from the FEC data in
            # the packet being committed (libopus falls back to PLC without it).
            fec = gap >= FRAME_SAMPLES
            plc_frames = min(lost - 1, _MAX_PLC_FRAMES, (gap - fec * FRAME_SAMPLES) // FRAME_SAMPLES)
            concealed = 0
            try:
                for _ in range(plc_frames):
                    writer.append(decoder.conceal(FRAME_SAMPLES))
                    concealed += 1
                if fec:
                    writer.append_silence(end - FRAME_SAMPLES - writer.frames)
                    writer.append(decoder.conceal(FRAME_SAMPLES, next_opus))
                    concealed += 1
            except _DECODE_FAILURES as exc:
                _log.debug("user %s: concealment failed: %s", self.user_id, exc)
            self._counters.concealed += concealed
        rest = end - writer.frames
        if rest > 0:
            writer.append_silence(rest)
