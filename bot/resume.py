"""After a restart: continue each recording the last process left running, or close it.

A recording the last process left open (:func:`bot.recovery.examine`: it was
suspended by a shutdown, or cut short by a crash) goes on in the same files
when nobody had begun to stop it, its voice channel still exists and has
people in it, it has not reached the maximum length counted from its start,
and the disk has room: the bot rejoins, every track continues where it ended on the recording's own
timeline, and the channel is told how many seconds are missing. Otherwise it
is closed as before resuming existed: finished with its summary when a
shutdown had suspended it, else repaired and announced as cut short by a crash.

After a reshard a recording's guild may be on a shard another process runs now:
this process, which has the recording's files, cannot continue it (the voice
connection belongs to the guild's shard), so it closes it and tells the guild
all the same, through Discord's REST API, which needs no shard.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import discord

from bot.announce import Announcer
from bot.recovery import Interrupted, close_interrupted
from bot.registry import RecordingRegistry
from bot.session import SessionLimits, StopReason
from bot.storage import AsyncRecordingStore, Recording, free_disk_mb
from bot.summary import resumed_text

__all__ = ["MOVED_AWAY", "NOT_RESUMED", "report_channel", "resume_or_close"]

_log = logging.getLogger(__name__)

#: Why a recording a shutdown suspended is finished rather than resumed.
NOT_RESUMED = StopReason("the bot restarted and could not continue it (nobody was left in the channel, "
                         "the channel is gone, or a limit was reached)", automatic=True)
#: Why a recording a shutdown suspended is finished when its guild is now run by another process.
MOVED_AWAY = StopReason("the bot restarted and this server moved to another of its processes (resharding), "
                        "which cannot continue a recording whose files are here", automatic=True)


async def resume_or_close(client: discord.Client, registry: RecordingRegistry, store: AsyncRecordingStore,
                          announcer: Announcer, limits: SessionLimits, interrupted: list[Interrupted]) -> None:
    """Resume or close each of ``interrupted``, and tell its channel (call once the guilds are known)."""
    for item in interrupted:
        try:
            if await _try_resume(client, registry, store, announcer, limits, item):
                continue
        except Exception:  # joining failed: the recording is closed as if it could not go on
            _log.exception("resuming recording %s failed; closing it", item.recording.id)
        try:
            await _close(client, store, announcer, item)
        except Exception:
            _log.exception("closing recording %s after the restart failed; the next start tries again",
                           item.recording.id)


async def _try_resume(client: discord.Client, registry: RecordingRegistry, store: AsyncRecordingStore,
                      announcer: Announcer, limits: SessionLimits, item: Interrupted) -> bool:
    """Resume ``item`` when it can go on; False when it cannot (nothing was changed)."""
    rec = item.recording
    if item.stop_begun:
        _log.info("recording %s is not resumed: it was being stopped", rec.id)
        return False
    if _served_elsewhere(client, rec.guild_id):
        _log.info("recording %s is not resumed: its guild is on a shard this process does not run", rec.id)
        return False
    guild = client.get_guild(rec.guild_id)
    channel = guild.get_channel(rec.channel_id) if guild is not None else None
    if not isinstance(channel, discord.VoiceChannel | discord.StageChannel):
        _log.info("recording %s is not resumed: its channel is gone", rec.id)
        return False
    if not any(not member.bot for member in channel.members):
        _log.info("recording %s is not resumed: nobody is in its channel", rec.id)
        return False
    elapsed = (datetime.now(UTC) - rec.started_at).total_seconds()
    if elapsed >= limits.max_seconds:
        _log.info("recording %s is not resumed: it reached the maximum length while the bot was away", rec.id)
        return False
    if await asyncio.to_thread(free_disk_mb, rec.directory) < limits.min_free_disk_mb:
        _log.info("recording %s is not resumed: free disk space is below the minimum", rec.id)
        return False
    await registry.resume(channel, rec, item.talk_seconds, report_channel=channel)
    resumed_at = datetime.now(UTC)
    _log.info("recording %s resumed after a restart; %.1f s missing", rec.id,
              (resumed_at - item.recorded_until).total_seconds())
    await announcer.post(channel, resumed_text(rec.id, item.recorded_until, resumed_at))
    return True


async def _close(client: discord.Client, store: AsyncRecordingStore, announcer: Announcer,
                 item: Interrupted) -> None:
    """Close ``item`` as it was left and announce it."""
    closed = await asyncio.to_thread(close_interrupted, store.store, item)
    channel = report_channel(client, closed)
    if channel is None:
        return  # the bot is no longer in the guild
    moved = client.get_guild(closed.guild_id) is None
    if item.suspended_at is None:
        await announcer.recovered(channel, closed)
        return
    if isinstance(channel, discord.abc.Messageable):
        await announcer.stopped(channel, MOVED_AWAY if moved else NOT_RESUMED, await store.read_manifest(closed))


def report_channel(client: discord.Client, recording: Recording) -> object | None:
    """Where to tell people about ``recording`` the start-up closed: its channel (or the
    server's system channel) when this process runs its guild; when another process
    does (after a reshard), its channel by id, which Discord's REST API posts to from
    any process; None when the bot is no longer in the guild."""
    guild = client.get_guild(recording.guild_id)
    if guild is not None:
        return guild.get_channel(recording.channel_id) or guild.system_channel
    if _served_elsewhere(client, recording.guild_id):
        return client.get_partial_messageable(recording.channel_id, guild_id=recording.guild_id)
    return None


def _served_elsewhere(client: discord.Client, guild_id: int) -> bool:
    """Whether Discord routes ``guild_id`` to a shard this process does not run (Discord's
    rule: shard ``(guild_id >> 22) % shard_count``), as after a reshard."""
    shard_ids = getattr(client, "shard_ids", None)
    if not client.shard_count or shard_ids is None:
        return False
    return (guild_id >> 22) % client.shard_count not in shard_ids
