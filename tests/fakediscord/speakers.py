"""Simulated speakers: real Opus encoders (one each), real RTP streams, ground truth.

A speaker is ticked every 20 ms by the scenario runner. While talking it
sends the next 20 ms of its synthetic voice, encoded ahead of its slot
(:meth:`SimulatedSpeaker.prepare`) so that the tick only sends: synthesizing
inside the tick made the later of several speakers starting in one slot send
15-25 ms late. After a burst it sends five Opus silence frames, as Discord
clients do, then goes quiet. Each frame is
DAVE-encrypted by the speaker's own davey session when the room runs DAVE, and
sent to every client in the room. Every frame is recorded, with what the
impairment did to it, so a test can compare a recording with what was sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np

from sinks.opus import OpusEncoder

from .audio import FRAME_SAMPLES, SpeechSynth
from .impair import ImpairedLink, Impairment
from .room import VoiceRoom
from .rtp import SILENCE_FRAME, RtpPacket, audio_level_extension

__all__ = ["SentFrame", "SimulatedSpeaker", "SILENCE_FRAMES_AFTER_TALK"]

_log = logging.getLogger(__name__)

SILENCE_FRAMES_AFTER_TALK = 5

#: Fates of a frame: delivered as is, lost, sent twice, sent late, or held
#: back (never sent, no sequence number used) because DAVE was not ready.
FATES = ("sent", "dropped", "duplicated", "delayed", "held")


@dataclass(slots=True)
class SentFrame:
    """Ground truth of one 20 ms frame of one speaker."""

    user_id: int
    ssrc: int
    seq: int | None
    timestamp: int
    opus: bytes
    silence: bool
    #: When the frame's 20 ms slot began (its capture time), on ``time.monotonic``:
    #: where the frame belongs on a recording's timeline.
    scheduled: float
    #: When it was handed to the room, on ``time.monotonic`` (the slot's start, or
    #: later when the fake's loop lagged).
    mono_time: float
    wall_time: float
    fate: str
    delays: list[float] = field(default_factory=list)
    #: Users who can open the frame: the DAVE group it was sealed for (None: not
    #: DAVE-encrypted, or never sealed).
    readers: frozenset[int] | None = None


class SimulatedSpeaker:
    """One simulated voice participant: encoder, voice, SSRC stream and ground truth."""

    def __init__(self, name: str, user_id: int, *, pitch_hz: float, seed: int,
                 impairment: Impairment = Impairment(), ssrc: int) -> None:
        self.name = name
        self.user_id = user_id
        self.synth = SpeechSynth(pitch_hz, seed)
        self.link = ImpairedLink(impairment)
        self.frames: list[SentFrame] = []
        self._rng = random.Random(seed ^ 0x5EED)
        self._talking = False
        self._silence_left = 0
        self._speaking_due: asyncio.TimerHandle | None = None
        #: The next slot's voice, encoded ahead by :meth:`prepare`.
        self._next_voice: bytes | None = None
        self.new_stream(ssrc)

    def new_stream(self, ssrc: int) -> None:
        """Start a new RTP stream (a reconnect): new SSRC, random seq and timestamp, fresh encoder."""
        self.ssrc = ssrc
        self.encoder = OpusEncoder(2, 64_000)
        self.seq = self._rng.randrange(1 << 16)
        self.timestamp = self._rng.randrange(1 << 32)
        self._talking = False
        self._silence_left = 0
        self._next_voice = None  # encoded by the old stream's encoder

    def prepare(self, talking: bool) -> None:
        """Encode the next slot's voice now, when the speaker will talk in it."""
        if talking and self._next_voice is None:
            self._next_voice = self._encode()

    def _encode(self) -> bytes:
        mono = self.synth.frame()
        return self.encoder.encode(np.repeat(mono[:, None], 2, axis=1))

    def tick(self, room: VoiceRoom | None, talking: bool, speaking_delay: float = 0.0, *,
             scheduled: float) -> None:
        """Send this 20 ms slot's frame (if any) to `room`'s clients; the slot began at
        `scheduled` on ``time.monotonic``."""
        if talking and not self._talking and room is not None:
            self._announce(room, speaking_delay)
        if talking:
            opus = self._next_voice if self._next_voice is not None else self._encode()
            self._next_voice = None
            self._silence_left = SILENCE_FRAMES_AFTER_TALK
        elif self._silence_left:
            opus = SILENCE_FRAME
            self._silence_left -= 1
        else:
            opus = b""
        self._talking = talking
        if opus and room is not None:
            self._send(room, opus, scheduled)
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF

    def _announce(self, room: VoiceRoom, delay: float) -> None:
        if self._speaking_due is not None:
            self._speaking_due.cancel()
        if room.announced.get(self.user_id) == self.ssrc and delay <= 0:
            return
        if delay > 0:
            self._speaking_due = asyncio.get_running_loop().call_later(
                delay, room.announce, self.user_id, self.ssrc)
        else:
            room.announce(self.user_id, self.ssrc)

    def _send(self, room: VoiceRoom, opus: bytes, scheduled: float) -> None:
        wire = room.dave_frame(self.user_id, opus)
        record = SentFrame(self.user_id, self.ssrc, None, self.timestamp, opus, opus == SILENCE_FRAME,
                           scheduled, time.monotonic(), time.time(), "held")
        self.frames.append(record)
        if wire is None:
            return
        record.readers = room.dave_readers()
        if not room.forwards(self.user_id):
            record.fate = "suppressed"  # in a stage's audience: the room drops it
            return
        record.seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        rng = self._rng
        # Real senders vary: some packets carry a BEDE extension, a few carry RTP padding.
        packet = RtpPacket(
            seq=record.seq, timestamp=self.timestamp, ssrc=self.ssrc, payload=wire,
            extension=audio_level_extension(rng.randrange(128)) if rng.random() < 0.5 else b"",
            padding=rng.randrange(1, 16) if rng.random() < 0.1 else 0,
        )
        record.delays = delays = self.link.delays()
        if not delays:
            record.fate = "dropped"
            return
        record.fate = "duplicated" if len(delays) > 1 else ("delayed" if delays[0] > 0 else "sent")
        loop = asyncio.get_running_loop()
        for delay in delays:
            if delay > 0:
                loop.call_later(delay, room.fan_out, packet)
            else:
                room.fan_out(packet)
