"""Declarative voice scenarios and their real-time runner, with ground truth.

A `Scenario` names speakers (join and leave times, talk segments, network
impairment, reconnects) and channel-wide events (garbage datagrams, RTCP,
UDP silence, a flood of hostile datagrams). `ScenarioRunner` plays it on the fake's event loop in 20 ms
slots against absolute `loop.time()` deadlines, so it never drifts; every
speaker's `frames` list is the ground truth of what was sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Final

from .flood import GarbageFlood
from .impair import Impairment
from .room import VoiceRoom
from .rtp import rtcp_sender_report
from .speakers import SentFrame, SimulatedSpeaker
from .state import World
from .voice import VoiceServer

__all__ = ["Talk", "SpeakerSpec", "Event", "Scenario", "ScenarioRunner", "DEFAULT_SCENARIO"]

_log = logging.getLogger(__name__)

FRAME_SECONDS: Final = 0.02


@dataclass(frozen=True, slots=True)
class Talk:
    """One talk burst, in seconds from the scenario start; SPEAKING goes out
    `speaking_delay` seconds after the first packet (0: before it)."""

    start: float
    end: float
    speaking_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class SpeakerSpec:
    """A simulated speaker. The fake assigns the user id when the scenario starts."""

    name: str
    pitch_hz: float
    talks: tuple[Talk, ...] = ()
    join: float = 0.0
    leave: float | None = None
    #: Times at which the speaker drops out of voice and rejoins with a new SSRC.
    reconnects: tuple[float, ...] = ()
    impairment: Impairment = Impairment()
    #: On a stage: in the audience (suppressed; the room forwards none of their voice)
    #: instead of among the speakers. Ignored in a voice channel.
    audience: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """A channel-wide event: "garbage" (`count` junk datagrams), "rtcp" (`count`
    sender reports), "silence" (no UDP for `seconds`), or "flood" (`count`
    hostile datagrams per second for `seconds`, see `flood.GarbageFlood`)."""

    at: float
    kind: str
    count: int = 10
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("garbage", "rtcp", "silence", "flood"):
            raise ValueError(f"unknown scenario event {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """Speakers and events over `duration` seconds; `loop` replays talks and events forever."""

    speakers: tuple[SpeakerSpec, ...]
    duration: float
    events: tuple[Event, ...] = ()
    loop: bool = False
    seed: int = 0


def _talk_at(spec: SpeakerSpec, t: float) -> Talk | None:
    """The talk of ``spec`` going on at scenario time ``t``, if any."""
    return next((k for k in spec.talks if k.start <= t < k.end), None)


def _turns(names: tuple[str, ...], pitches: tuple[float, ...], turn: float) -> tuple[SpeakerSpec, ...]:
    return tuple(
        SpeakerSpec(name, pitch, talks=(Talk(i * turn, i * turn + turn - 0.5),))
        for i, (name, pitch) in enumerate(zip(names, pitches))
    )


#: Standalone mode: alice, bob and carol already in voice, talking in turns forever.
DEFAULT_SCENARIO: Final = Scenario(
    speakers=_turns(("alice", "bob", "carol"), (210.0, 110.0, 160.0), 4.0),
    duration=12.0, loop=True,
)


@dataclass(slots=True)
class _Live:
    spec: SpeakerSpec
    speaker: SimulatedSpeaker
    present: bool = False
    pending: list[float] = field(default_factory=list)


class ScenarioRunner:
    """Plays a `Scenario` in `channel_id` on the fake's loop.

    Users are created in `world` (and made guild members) on `start()`; their
    voice states go through `World.set_voice_state`, so the gateway announces
    them to bots and the voice server puts them in the room.
    """

    def __init__(self, world: World, voice_server: VoiceServer, guild_id: int, channel_id: int,
                 scenario: Scenario) -> None:
        self.world = world
        self.server = voice_server
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.scenario = scenario
        self.speakers: dict[str, SimulatedSpeaker] = {}
        self.started_mono = 0.0
        self.started_wall = 0.0
        self._live: list[_Live] = []
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(scenario.seed)
        #: Floods started by "flood" events, with what each sent.
        self.floods: list[GarbageFlood] = []

    def truth(self, name: str) -> list[SentFrame]:
        """Every frame `name` produced (including held/dropped ones), in send order."""
        return self.speakers[name].frames

    async def start(self) -> None:
        """Create the speakers' users and start playing."""
        for index, spec in enumerate(self.scenario.speakers):
            user_id = self._user_for(spec.name)
            self.server.register_speaker(user_id)
            speaker = SimulatedSpeaker(spec.name, user_id, pitch_hz=spec.pitch_hz,
                                       seed=self.scenario.seed * 1000 + index,
                                       impairment=spec.impairment, ssrc=self.server.new_ssrc())
            self.speakers[spec.name] = speaker
            self._live.append(_Live(spec, speaker, pending=sorted(spec.reconnects)))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="voice scenario")

    def _user_for(self, name: str) -> int:
        """The guild member called `name` who is not in voice (the default world has
        alice, bob and carol), or a new user made a member."""
        guild = self.world.guilds[self.guild_id]
        taken = {s.user_id for s in self.speakers.values()}
        for uid, member in guild.members.items():
            if (member.user.username == name and not member.user.bot and uid not in taken
                    and (self.guild_id, uid) not in self.world.voice_states):
                return uid
        user = self.world.add_user(name)
        self.world.add_member(guild, user)
        return user.id

    async def wait_done(self) -> None:
        """Wait until a finite scenario has played out (re-raises its failure)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Stop playing and take every speaker out of voice."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for live in self._live:
            if live.present:
                self._set_present(live, False)

    def _room(self) -> VoiceRoom:
        return self.server.room(self.guild_id, self.channel_id)

    def _set_present(self, live: _Live, present: bool) -> None:
        live.present = present
        stage = self.world.is_stage(self.guild_id, self.channel_id)
        self.world.set_voice_state(self.guild_id, live.speaker.user_id, self.channel_id if present else None,
                                   suppress=live.spec.audience if stage and present else None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        scenario = self.scenario
        self.started_mono, self.started_wall = loop.time(), time.time()
        events = sorted(scenario.events, key=lambda e: e.at)
        slot = 0
        next_event = 0
        while True:
            deadline = self.started_mono + slot * FRAME_SECONDS
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t = slot * FRAME_SECONDS
            if not scenario.loop and t >= scenario.duration:
                return
            # Talks and events repeat in a looping scenario; joins and leaves happen once.
            cycle_t = t % scenario.duration if scenario.loop else t
            if scenario.loop and cycle_t < FRAME_SECONDS / 2:
                next_event = 0
            while next_event < len(events) and events[next_event].at <= cycle_t:
                self._fire(events[next_event], t)
                next_event += 1
            room = self._room()
            for flood in self.floods:
                flood.tick(room, t)
            for live in self._live:
                self._membership(live, t)
                talk = _talk_at(live.spec, cycle_t)
                live.speaker.tick(room if live.present else None, talk is not None,
                                  talk.speaking_delay if talk else 0.0, scheduled=deadline)
            # The next slot's voice is encoded now, in this slot's spare time, so that
            # every speaker sends on time even when several start together.
            next_t = (t + FRAME_SECONDS) % scenario.duration if scenario.loop else t + FRAME_SECONDS
            for live in self._live:
                live.speaker.prepare(_talk_at(live.spec, next_t) is not None)
            slot += 1

    def _membership(self, live: _Live, t: float) -> None:
        spec = live.spec
        gone = spec.leave is not None and t >= spec.leave
        if not live.present and not gone and t >= spec.join:
            self._set_present(live, True)
        elif live.present and gone:
            self._set_present(live, False)
        elif live.present and live.pending and t >= live.pending[0]:
            live.pending.pop(0)
            self._set_present(live, False)
            live.speaker.new_stream(self.server.new_ssrc())
            self._set_present(live, True)

    def _fire(self, event: Event, t: float) -> None:
        room = self._room()
        if event.kind == "silence":
            self.server.silence(event.seconds)
        elif event.kind == "flood":
            self.floods.append(GarbageFlood(self.server.media, event.count, t + event.seconds, self._rng))
        elif event.kind == "garbage":
            for _ in range(event.count):
                # Half look like RTP (version bits, an unknown or Opus payload type), half are noise.
                junk = os.urandom(self._rng.randrange(1, 200))
                if self._rng.random() < 0.5 and len(junk) >= 2:
                    junk = bytes([0x80, self._rng.choice((0x78, 0x60, 0x65))]) + junk[2:]
                room.fan_out_raw(junk, None)
        else:
            for live in self._live:
                if live.present:
                    s = live.speaker
                    clear, secret = rtcp_sender_report(s.ssrc, int(time.time() * (1 << 32)),
                                                       s.timestamp, len(s.frames), 0)
                    for _ in range(event.count):
                        room.fan_out_raw(clear, secret)
        _log.debug("scenario event %s at %.2fs", event.kind, event.at)
