"""The receive paths under fuzz: one real ``VoiceReceiver`` into one real ``AudioSink`` per lane.

A lane is one voice connection as the bot has it: a transport key, a DAVE
state (a real davey session in a settled group, or DAVE off), an SSRC map and
a sink writing WAV files. One real speaker talks on it throughout, on an SSRC
no forged datagram uses; at the end that speaker's WAV must equal the offline
decode of exactly the frames it sent, and every datagram fed must sit in
exactly one receiver counter.
"""

from __future__ import annotations

import pathlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile

from bot.voice.receiver import VoiceReceiver
from bot.voice.ssrc_map import SsrcMap
from sinks import AudioSink
from sinks.opus import OpusDecoder
from tests.voice.packets import XCHACHA, voice_datagram

__all__ = ("SPEAKER", "FUZZ_USER", "REAL_SSRC", "FUZZ_SSRC", "DaveState", "Lane", "SteppedClock")

SPEAKER, FUZZ_USER, BOT = 111, 222, 999
#: The real speaker's SSRC: only its real frames use it.
REAL_SSRC = 0x5EED
#: Mapped to the fuzz user from the start; small SSRCs get mapped as the campaign runs.
FUZZ_SSRC = 0xF022
#: Replays come from this many of the speaker's latest datagrams: all within
#: the duplicate filter's restart jump (3000), past which an old datagram
#: counts as a restarted sender by design.
RECENT = 2000
#: Sink queue depth above which a real frame waits for the worker (the
#: campaign measures the receive path, not the sink's capacity).
QUEUE_CALM = 1000


@dataclass
class DaveState:
    """discord.py's ``VoiceConnectionState`` as the receiver reads it."""

    dave_session: Any
    dave_protocol_version: int


class SteppedClock:
    """The arrival clock: moves 20 ms per real frame, so the speaker's timeline is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lane:
    """One receiver + sink + real speaker stream.

    :param name: shown in the report (``dave`` / ``plain``).
    :param directory: where the sink writes its WAV files.
    :param key: the transport key.
    :param state: the DAVE state the receiver reads.
    :param clock: the shared arrival clock.
    :param speaker_frames: the real speaker's wire frames, in order (DAVE-encrypted on a DAVE lane).
    :param speaker_opus: the same frames as plain Opus, for the offline decode.
    """

    def __init__(
        self,
        name: str,
        directory: pathlib.Path,
        key: bytes,
        state: DaveState,
        clock: SteppedClock,
        speaker_frames: list[bytes],
        speaker_opus: list[bytes],
    ) -> None:
        self.name = name
        self.directory = directory
        self.sink = AudioSink(directory, clock=clock)
        self.ssrc_map: SsrcMap[Any] = SsrcMap()
        self.ssrc_map.bind(REAL_SSRC, SPEAKER)
        self.ssrc_map.bind(FUZZ_SSRC, FUZZ_USER)
        self.receiver = VoiceReceiver(self.sink, state, self.ssrc_map, clock=clock)
        self.receiver.set_transport(XCHACHA, key)
        self.key = key
        self._speaker_frames = speaker_frames
        self._speaker_opus = speaker_opus
        self.sent = 0
        #: The speaker's latest datagrams, for replays.
        self.recent: deque[bytes] = deque(maxlen=RECENT)
        #: Datagrams fed (forged and real).
        self.fed = 0

    def feed(self, data: bytes) -> None:
        """Run one datagram through the receiver (exceptions propagate to the caller)."""
        self.fed += 1
        self.receiver.on_datagram(data)

    def speak(self) -> bool:
        """Send the speaker's next real frame; ``False`` once all were sent."""
        if self.sent == len(self._speaker_frames):
            return False
        while self.sink.stats().queue_depth > QUEUE_CALM:
            time.sleep(0.001)
        i = self.sent
        data = voice_datagram(
            XCHACHA, self.key, self._speaker_frames[i],
            sequence=(65_000 + i) & 0xFFFF, timestamp=(2**32 - 96_000 + 960 * i) % 2**32,
            ssrc=REAL_SSRC, extension_body=b"\x10\x00\x00\x01", padding=i % 3,
        )
        self.recent.append(data)
        self.sent += 1
        self.feed(data)
        return True

    def accounting_gap(self) -> int:
        """Datagrams fed minus those in a counter (accepted, a drop reason, or held): must be 0."""
        stats = self.receiver.stats()
        in_counters = stats.accepted + stats.held + stats.dropped
        return (self.fed - stats.datagrams) + (stats.datagrams - in_counters)

    def finish(self) -> dict[str, Any]:
        """Close receiver and sink; return the lane's figures and the speaker check."""
        self.receiver.close()
        self.sink.close()
        receive = self.receiver.stats()
        sink = self.sink.stats()
        speaker = sink.per_user.get(SPEAKER)
        speaker_ok, speaker_note = self._speaker_matches()
        return {
            "fed": self.fed,
            "receive": receive.as_dict(),
            "accounting_gap": self.accounting_gap(),
            "sink_received": sink.received,
            "sink_decode_errors": sink.decode_errors,
            "sink_error": sink.failure.message if sink.failure is not None else None,
            "speaker_frames": self.sent,
            "speaker_packets": speaker.packets if speaker is not None else 0,
            "speaker_lost": speaker.lost if speaker is not None else 0,
            "speaker_wav_matches": speaker_ok,
            "speaker_note": speaker_note,
        }

    def _speaker_matches(self) -> tuple[bool, str]:
        """Whether the speaker's WAV is the offline decode of its frames, sample for sample, from sample 0."""
        decoder = OpusDecoder(1)
        expected = np.concatenate([decoder.decode(f).copy() for f in self._speaker_opus[: self.sent]])[:, 0]
        audio, rate = soundfile.read(self.directory / f"{SPEAKER}.wav", dtype="int16")
        if rate != 48_000 or len(audio) < len(expected):
            return False, f"rate {rate}, {len(audio)} samples for {len(expected)} expected"
        differ = np.flatnonzero(audio[: len(expected)] != expected)
        if differ.size:
            return False, f"{differ.size} samples differ, first at {differ[0]}"
        return True, f"{len(expected)} samples equal"
