"""A recording bot session against a FakeDiscord: discord.py + RecordingVoiceClient + AudioSink.

:class:`RecordingSession` runs a plain ``discord.Client`` on its own loop
thread (``tests.fakediscord_tests.clientthread``), joins the default voice
channel with ``cls=RecordingVoiceClient`` and records into a real :class:`sinks.AudioSink`. The sink is wrapped in a
:class:`TeeSink` that forwards every write and remembers what was handed
over, so a test knows exactly which frames the engine got.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import discord
import numpy as np
import soundfile

from bot.voice.client import RecordingVoiceClient
from bot.voice.stats import ReceiveStats, RecordingStats
from sinks import AudioSink, EngineStats, VoicePacket
from sinks.opus import SAMPLE_RATE
from tests.fakediscord.scenario import Scenario, ScenarioRunner
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.speakers import SentFrame, SimulatedSpeaker
from tests.fakediscord_tests.clientthread import ClientThread, trusting_connector
from tests.polling import wait_until

from .truth import ALIGNMENT, match_track_without_late, sent_frames

__all__ = ["TeeSink", "RecordingSession", "settle"]


class TeeSink:
    """Forwards to a real :class:`AudioSink` and keeps every packet it accepted, per user."""

    def __init__(self, sink: AudioSink) -> None:
        self.sink = sink
        self.packets: dict[int, list[VoicePacket]] = {}
        self._lock = threading.Lock()

    def write(self, user_id: int, packet: VoicePacket) -> bool:
        """``AudioSink.write``, remembering accepted packets."""
        accepted = self.sink.write(user_id, packet)
        if accepted:
            with self._lock:
                self.packets.setdefault(user_id, []).append(packet)
        return accepted

    def stats(self) -> EngineStats:
        """The real sink's counters."""
        return self.sink.stats()

    def handed(self) -> dict[int, list[VoicePacket]]:
        """A copy of what was accepted so far."""
        with self._lock:
            return {uid: list(p) for uid, p in self.packets.items()}


def settle(values: Callable[[], Any], *, quiet: float = 0.3, timeout: float = 15.0, what: str = "quiet") -> Any:
    """Poll ``values()`` until it stays the same for ``quiet`` seconds; return it."""
    deadline = time.monotonic() + timeout
    last, since = values(), time.monotonic()
    while True:
        time.sleep(0.05)
        now_value, now = values(), time.monotonic()
        if now_value != last:
            last, since = now_value, now
        elif now - since >= quiet:
            return now_value
        if now > deadline:
            raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class SpeakerTrack:
    """One simulated speaker's track, checked against what they sent (see :meth:`RecordingSession.checked_track`)."""

    #: Every frame the speaker produced, by (ssrc, seq).
    sent: dict[tuple[int, int], SentFrame]
    #: What the sink was handed for them, in order.
    handed: list[VoicePacket]
    wav: np.ndarray
    #: The highest floor (samples) of each run some of whose frames all came more than the
    #: budget late, so that it was judged by their arrival (see :mod:`tests.receive_loopback.truth`).
    late_runs: list[int]
    #: Packets handed over that the engine counted ``late`` (they came after their slot was
    #: committed) and so never decoded, by (ssrc, seq).
    too_late: list[tuple[int, int]]


class RecordingSession:
    """The bot side of an end-to-end test. Use as a context manager."""

    def __init__(self, fake: FakeDiscord, directory: Path) -> None:
        self.fake = fake
        self.directory = directory
        cfg = fake.config
        self.config = cfg
        self.thread = ClientThread(
            lambda: discord.Client(intents=discord.Intents.default(), connector=trusting_connector(cfg["ca_file"])),
            cfg["token"],
        )
        self.vc: RecordingVoiceClient | None = None
        self.sink: AudioSink | None = None
        self.tee: TeeSink | None = None
        self.runner: ScenarioRunner | None = None
        self.final_stats: RecordingStats | None = None

    def __enter__(self) -> RecordingSession:
        try:
            client = self.thread.start()
            channel = client.get_channel(self.config["voice_channel_id"])
            self.vc = self.thread.call(channel.connect(cls=RecordingVoiceClient))
        except BaseException:
            self.thread.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.runner is not None:
                self.fake.run(self.runner.stop())
            if self.vc is not None and self.vc.is_recording():
                self.stop()
            if self.vc is not None and self.vc.is_connected():
                try:
                    self.thread.call(self.vc.disconnect(), timeout=5)
                except TimeoutError:
                    # discord.py waits for the gateway to confirm the leave and can
                    # miss a confirmation that comes too fast; closing the client ends it.
                    pass
        finally:
            if self.sink is not None:
                self.sink.close()
            self.thread.close()

    @property
    def connection(self) -> Any:
        """discord.py's ``VoiceConnectionState`` of the bot."""
        assert self.vc is not None
        return self.vc._connection

    def wait_dave_ready(self, timeout: float = 15.0) -> None:
        """Wait until the bot's DAVE session is in a group (alone in the channel it never is)."""
        wait_until(lambda: self.connection.dave_session is not None and self.connection.dave_session.ready,
                   timeout=timeout, what="the bot's DAVE handshake")

    def record(self) -> AudioSink:
        """Create the sink and start recording into it."""
        self.sink = AudioSink(self.directory)
        self.tee = TeeSink(self.sink)
        assert self.vc is not None

        async def start() -> None:
            self.vc.start_recording(self.tee)  # type: ignore[union-attr]

        self.thread.call(start())
        return self.sink

    def play(self, scenario: Scenario) -> ScenarioRunner:
        """Start a scenario in the bot's voice channel."""
        self.runner = self.fake.start_scenario(scenario)
        return self.runner

    def wait_played(self) -> None:
        """Wait until the scenario is over and the last datagrams were read and queued."""
        assert self.runner is not None
        self.fake.run(self.runner.wait_done(), timeout=60)
        settle(lambda: (self.receive_stats().datagrams, self.fake.voice.media.stats.sent),
               what="the last datagrams")

    def receive_stats(self) -> ReceiveStats:
        """The receiver's counters now."""
        assert self.vc is not None
        return self.vc.recording_stats().receive

    def stop(self) -> RecordingStats:
        """Stop recording and close the sink; return the final stats."""
        assert self.vc is not None and self.sink is not None

        async def stop() -> RecordingStats:
            return self.vc.stop_recording()  # type: ignore[union-attr]

        receive = self.thread.call(stop()).receive
        self.sink.close()
        self.final_stats = RecordingStats(receive=receive, engine=self.sink.stats())
        return self.final_stats

    def checked_track(self, speaker: SimulatedSpeaker) -> SpeakerTrack:
        """Assert that the sink was handed exactly frames ``speaker`` sent, and that its WAV
        holds every run of them (but packets the engine counted late) sample-exact within :data:`ALIGNMENT` of its capture time (or, where
        the frames came late, of the fastest recent arrival: ``Run.placed_within``). Runs judged by
        arrival are printed."""
        assert self.tee is not None and self.sink is not None
        name = speaker.name
        sent = sent_frames(speaker.frames)
        handed = self.tee.handed().get(speaker.user_id, [])
        assert handed, f"{name}: nothing reached the sink"
        for packet in handed:
            assert packet.opus == sent[(packet.ssrc, packet.sequence)].opus, (
                f"{name} seq {packet.sequence}: not the frame that was sent")
        wav, rate = soundfile.read(self.directory / f"{speaker.user_id}.wav", dtype="int16")
        assert rate == SAMPLE_RATE
        runs, problems, left_out = match_track_without_late(wav, handed, sent, self.sink.started_at,
                                                            self.sink.stats().late)
        assert not problems, f"{name}: " + "; ".join(problems[:5])
        placed = [r for r in runs if r.offset is not None]
        assert placed, f"{name}: no audible run found"
        misplaced = [(r.label, r.offset, r.late) for r in placed if not r.placed_within]
        assert not misplaced, (f"{name}: runs misplaced (worst offset from capture time, highest floor; "
                               f"samples, budget {ALIGNMENT} beyond the floor): {misplaced}")
        late = [r.late for r in placed if r.late > ALIGNMENT]
        if late:
            print(f"{name}: {len(late)} of {len(placed)} runs judged by arrival: the speaker sent them "
                  f"up to {max(late) * 1000 // SAMPLE_RATE} ms late")
        return SpeakerTrack(sent, handed, wav, late, [(p.ssrc, p.sequence) for p in left_out])
