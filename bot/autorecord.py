"""Autorecord: a server's chosen voice channels record by themselves when people come.

Driven by voice state updates. A watched channel starts a recording, exactly as
``/record start`` does (REC mark, consent notice, opt-outs), when it holds the
server's minimum of humans (bots do not count) or when a member with a trigger
role joins it. The recording stops by the usual rules (empty channel, maximum
length, low disk, ``/record stop``).

No flapping: once a recording of a watched channel has ended, the channel is
*disarmed* and records by itself again only after it has stayed empty for the
grace (``AUTORECORD_GRACE_SECONDS``); a member who leaves and rejoins within it
restarts nothing, and the empty-channel rule keeps a running recording going
over such a gap.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.access import bot_cannot_record, who_may_record
from bot.announce import Announcer
from bot.config import Settings
from bot.guild_config import AutorecordSettings, GuildConfig
from bot.registry import AlreadyRecording, RecordingRegistry
from bot.summary import plain, started_text

__all__ = ["Autorecorder"]

_log = logging.getLogger(__name__)

VoiceLike = discord.VoiceChannel | discord.StageChannel


def _humans(channel: VoiceLike) -> list[discord.Member]:
    return [m for m in channel.members if not m.bot]


class Autorecorder:
    """Starts recordings of watched channels; feed it every voice state update."""

    def __init__(self, settings: Settings, config: GuildConfig, registry: RecordingRegistry,
                 announcer: Announcer) -> None:
        self._settings = settings
        self._config = config
        self._registry = registry
        self._announcer = announcer
        #: Channels whose recording ended while people were in them: they wait to empty.
        self._disarmed: set[int] = set()
        #: Channels empty now, re-armed once the grace has passed without anyone coming back.
        self._rearming: dict[int, asyncio.Task[None]] = {}
        self._closed = False
        registry.add_end_listener(lambda session: self._recording_ended(session.channel))

    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        """discord.py's event: someone joined, left or moved between voice channels."""
        if before.channel is after.channel or self._closed:
            return  # mute, deafen, stream: nobody came or went
        auto = (await self._config.get(member.guild.id)).autorecord
        for channel in (before.channel, after.channel):
            if isinstance(channel, VoiceLike) and channel.id in auto.channel_ids:
                joined = member if channel is after.channel else None
                await self._consider(channel, auto, joined)

    def close(self) -> None:
        """Start nothing more, and stop the re-arm timers (shutdown)."""
        self._closed = True
        for task in self._rearming.values():
            task.cancel()
        self._rearming.clear()

    async def _consider(self, channel: VoiceLike, auto: AutorecordSettings, joined: discord.Member | None) -> None:
        """Someone came to or left the watched ``channel``: start a recording if it is due."""
        humans = _humans(channel)
        if not humans:
            self._rearm_when_still_empty(channel)
            return
        rearm = self._rearming.pop(channel.id, None)
        if rearm is not None:  # back within the grace: the channel never emptied for good
            rearm.cancel()
        if channel.id in self._disarmed or self._registry.session(channel.guild.id) is not None:
            return
        by_count = auto.min_members is not None and len(humans) >= auto.min_members
        by_role = (joined is not None and not joined.bot
                   and any(role.id in auto.trigger_role_ids for role in joined.roles))
        if by_count or by_role:
            why = (f"{len(humans)} member{'s' if len(humans) > 1 else ''} joined" if by_count
                   else f"{plain(joined.display_name) if joined else 'a member'} joined")
            await self._start(channel, auto, why)

    async def _start(self, channel: VoiceLike, auto: AutorecordSettings, why: str) -> None:
        guild = channel.guild
        post = guild.get_channel(auto.post_channel_id) if auto.post_channel_id is not None else None
        report = post if isinstance(post, discord.abc.Messageable) else None
        cannot = bot_cannot_record(channel, self._settings.recordings_dir, self._settings.min_free_disk_mb)
        if cannot is not None:
            self._disarmed.add(channel.id)  # say it once, not at every join
            _log.info("autorecord of channel %s in guild %s refused: %s", channel.id, guild.id, cannot)
            await self._announcer.post(report, f"Could not record {channel.mention} by itself: {cannot}")
            return
        _log.info("autorecord starts in guild %s channel %s (%s)", guild.id, channel.id, why)
        try:
            session = await self._registry.start(channel, report_channel=report)
        except AlreadyRecording:  # a /record start or another event got there first
            return
        except Exception as exc:
            _log.warning("autorecord in guild %s failed to start: %s", guild.id, exc, exc_info=True)
            await self._announcer.post(report, f"Could not record {channel.mention} by itself "
                                               f"(the error is in the bot's log).")
            return
        assert session.recording is not None
        roles = (await self._config.get(guild.id)).recorder_role_ids
        text = started_text(channel.mention, session.recording.id,
                            who_may_record(guild, self._settings.recorder_role, roles),
                            self._settings.max_recording_hours)
        await self._announcer.post(report, f"Autorecord ({why}). {text}")

    def _recording_ended(self, channel: VoiceLike) -> None:
        """A recording of ``channel`` ended: it records by itself again only once it has emptied."""
        self._disarmed.add(channel.id)
        if not _humans(channel):
            self._rearm_when_still_empty(channel)

    def _rearm_when_still_empty(self, channel: VoiceLike) -> None:
        if self._closed or channel.id not in self._disarmed or channel.id in self._rearming:
            return
        task = asyncio.ensure_future(self._rearm(channel))
        task.set_name(f"autorecord re-arm {channel.id}")
        self._rearming[channel.id] = task

    async def _rearm(self, channel: VoiceLike) -> None:
        try:
            await asyncio.sleep(self._settings.autorecord_grace_seconds)
        except asyncio.CancelledError:
            return
        self._rearming.pop(channel.id, None)
        if not _humans(channel):
            self._disarmed.discard(channel.id)
            _log.info("autorecord channel %s stayed empty: it records by itself again", channel.id)
