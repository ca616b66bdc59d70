"""A cheap load generator for benchmarks: many simulated speakers, one RTP stream each.

Unlike :mod:`.speakers` (one real encoder per speaker, ground truth of every
frame), every speaker here replays the same short loop of pre-encoded Opus
frames, so the generator's cost is what a voice server's is: per packet one
DAVE encryption with the speaker's own davey session (when the room runs
DAVE), one rtpsize transport encryption with the listener's key, one
``sendto`` from the voice server's media socket. It only counts what it sent.

Use on the fake's loop: :func:`build_load_world` before the listener (the
bot) connects to the gateway, so its GUILD_CREATEs include every guild;
:meth:`LoadGenerator.join` puts the speakers in voice (the DAVE groups form
without the listener); :meth:`LoadGenerator.ready` tells when a listener is
in every room and in every group; :meth:`LoadGenerator.stream` plays.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from sinks.opus import OpusEncoder

from .audio import SpeechSynth
from .room import VoiceRoom
from .rtp import OPUS_PAYLOAD_TYPE, SILENCE_FRAME
from .state import CHANNEL_TEXT, CHANNEL_VOICE, User, World, snowflake
from .voice import VoiceServer

__all__ = ["LoadRoom", "LoadStats", "LoadGenerator", "build_load_world", "guild_id_on_shard", "opus_loop", "shard_of"]

_log = logging.getLogger(__name__)

FRAME_SECONDS: Final = 0.02
#: Each 20 ms slot is cut in this many sub-slots, each sending its share of the
#: speakers, so packets arrive spread over the slot as from independent clients.
SUB_SLOTS: Final = 4
_RTP_HEADER: Final = struct.Struct(">BBHII")


def opus_loop(seconds: float = 2.0, *, pitch_hz: float = 150.0, seed: int = 7) -> list[bytes]:
    """``seconds`` of synthetic speech, encoded once as a Discord client would (stereo, 64 kb/s)."""
    synth, encoder = SpeechSynth(pitch_hz, seed), OpusEncoder(2, 64_000)
    frames = []
    for _ in range(round(seconds / FRAME_SECONDS)):
        mono = synth.frame()
        frames.append(encoder.encode(np.repeat(mono[:, None], 2, axis=1)))
    return frames


@dataclass(slots=True)
class LoadRoom:
    """One guild with one voice channel and the speakers placed in it."""

    guild_id: int
    text_channel_id: int
    voice_channel_id: int
    owner_id: int
    speaker_ids: list[int]


@dataclass(slots=True)
class LoadStats:
    """What :meth:`LoadGenerator.stream` did."""

    #: Datagrams sent, per guild.
    sent: dict[int, int] = field(default_factory=dict)
    #: Frames not sent because the speaker's DAVE state said hold (a transition pending).
    held: int = 0
    #: Sub-slots that started more than one sub-slot late (the generator fell behind).
    late_slots: int = 0
    #: Seconds from the first to the last slot.
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Datagrams sent in all guilds."""
        return sum(self.sent.values())


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's routing rule: the gateway shard that receives ``guild_id``'s events."""
    return (guild_id >> 22) % shard_count


def guild_id_on_shard(shard: int, shard_count: int) -> int:
    """A new snowflake that :func:`shard_of` puts on ``shard``: a fresh one with its
    millisecond timestamp moved forward by less than ``shard_count``."""
    made = snowflake()
    ms = made >> 22
    return ((ms + (shard - ms) % shard_count) << 22) | (made & 0x3FFFFF)


def build_load_world(world: World, bot: User, *, rooms: int, speakers: int, shards: int = 1) -> list[LoadRoom]:
    """Create ``rooms`` guilds (owner, text and voice channel, ``bot`` a member) and
    ``speakers`` users spread over them as evenly as possible; guild ``i`` lies on
    gateway shard ``i % shards`` of ``shards``, so the rooms alternate between them."""
    if rooms < 1 or speakers < rooms:
        raise ValueError(f"need at least one speaker per room: {speakers} speakers, {rooms} rooms")
    out = []
    for index in range(rooms):
        owner = world.add_user(f"load-owner-{index}")
        guild = world.add_guild(f"Load Guild {index}", owner, guild_id=guild_id_on_shard(index % shards, shards))
        text = world.add_channel(guild, "general", CHANNEL_TEXT)
        voice = world.add_channel(guild, "Voice", CHANNEL_VOICE)
        world.add_member(guild, bot)
        count = speakers // rooms + (index < speakers % rooms)
        ids = []
        for n in range(count):
            user = world.add_user(f"speaker-{index}-{n}")
            world.add_member(guild, user)
            ids.append(user.id)
        out.append(LoadRoom(guild.id, text.id, voice.id, owner.id, ids))
    return out


@dataclass(slots=True)
class _Stream:
    user_id: int
    ssrc: int
    seq: int
    timestamp: int
    offset: int


class LoadGenerator:
    """Puts :class:`LoadRoom` speakers in voice and streams their audio to a listener."""

    def __init__(self, server: VoiceServer, rooms: list[LoadRoom], frames: list[bytes], *, seed: int = 1) -> None:
        if not frames:
            raise ValueError("the generator needs at least one Opus frame")
        self.server = server
        self.rooms = rooms
        self.frames = frames
        rng = random.Random(seed)
        self._streams: dict[int, list[_Stream]] = {
            room.guild_id: [
                _Stream(uid, server.new_ssrc(), rng.randrange(1 << 16), rng.randrange(1 << 32),
                        rng.randrange(len(frames)))
                for uid in room.speaker_ids
            ]
            for room in rooms
        }

    def _room(self, room: LoadRoom) -> VoiceRoom:
        return self.server.room(room.guild_id, room.voice_channel_id)

    async def join(self) -> None:
        """Every speaker enters its voice channel; a room's speakers join its DAVE group together.

        Joined one by one, each speaker would cost a group commit that every
        member processes (hours for a room of 300); a batch costs two. The
        rooms take turns with the rest of the fake's loop.
        """
        world = self.server.world
        for room in self.rooms:
            with self._room(room).batched():
                for uid in room.speaker_ids:
                    self.server.register_speaker(uid)
                    world.set_voice_state(room.guild_id, uid, room.voice_channel_id)
            await asyncio.sleep(0)

    def ready(self, listener_id: int | None = None) -> bool:
        """True when every speaker may send (in its DAVE group, no transition
        pending) and, given ``listener_id``, that client is connected in every
        room and a member of every room's group."""
        for room in self.rooms:
            voice_room = self._room(room)
            if listener_id is not None:
                client = voice_room.clients.get(listener_id)
                if client is None or getattr(client, "address", True) is None:
                    return False
            for uid in room.speaker_ids:
                # Opus silence passes DAVE untouched, so this probe costs no nonce.
                if voice_room.dave_frame(uid, SILENCE_FRAME) is None:
                    return False
                member = voice_room.dave_member(uid)
                if listener_id is not None and member is not None:
                    if str(listener_id) not in member.session.get_user_ids():
                        return False
        return True

    async def stream(self, seconds: float, listener_id: int) -> LoadStats:
        """Send every speaker's frames to ``listener_id`` for ``seconds`` (20 ms apart, spread
        over :data:`SUB_SLOTS` sub-slots); returns what was sent."""
        loop = asyncio.get_running_loop()
        stats = LoadStats(sent={room.guild_id: 0 for room in self.rooms})
        parts = self._parts(listener_id)
        for room in self.rooms:
            for s in self._streams[room.guild_id]:
                self._room(room).announce(s.user_id, s.ssrc)
        frames, n_frames, pack = self.frames, len(self.frames), _RTP_HEADER.pack
        step = FRAME_SECONDS / SUB_SLOTS
        slots = round(seconds / FRAME_SECONDS) * SUB_SLOTS
        start = loop.time()
        for slot in range(slots):
            deadline = start + slot * step
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -step:
                stats.late_slots += 1
            frame_index = slot // SUB_SLOTS
            for guild_id, voice_room, client, streams in parts[slot % SUB_SLOTS]:
                sent = 0
                for s in streams:
                    wire = voice_room.dave_frame(s.user_id, frames[(s.offset + frame_index) % n_frames])
                    if wire is None:
                        stats.held += 1
                        continue
                    clear = pack(0x80, OPUS_PAYLOAD_TYPE, s.seq, s.timestamp, s.ssrc)
                    if client.send_datagram(clear, wire):
                        sent += 1
                    s.seq = (s.seq + 1) & 0xFFFF
                    s.timestamp = (s.timestamp + 960) & 0xFFFFFFFF
                stats.sent[guild_id] += sent
        stats.seconds = loop.time() - start
        return stats

    def _parts(self, listener_id: int) -> list[list[tuple[int, VoiceRoom, object, list[_Stream]]]]:
        """Each sub-slot's (guild, room, listener connection, streams) groups."""
        parts: list[list[tuple[int, VoiceRoom, object, list[_Stream]]]] = [[] for _ in range(SUB_SLOTS)]
        for room in self.rooms:
            voice_room = self._room(room)
            client = voice_room.clients.get(listener_id)
            if client is None:
                raise RuntimeError(f"user {listener_id} is not connected to voice in guild {room.guild_id}")
            streams = self._streams[room.guild_id]
            for sub in range(SUB_SLOTS):
                parts[sub].append((room.guild_id, voice_room, client, streams[sub::SUB_SLOTS]))
        return parts
