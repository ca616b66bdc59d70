"""The running recordings of every guild, one record per guild.

A record holds what goes with one guild's recording: the session, the text
channel its reports go to, and the live set of members who opted out (read
by the socket thread, so ``/record optout`` takes effect at once). Records
are added by :meth:`RecordingRegistry.start` (or :meth:`~RecordingRegistry.resume`
after a restart), which admits one recording per guild however many starts
race, and removed in one place, however the recording ends: a command, a
reason found by the session's own watch, or shutdown (which suspends a
recording with people in its channel for the next start to resume).
Exactly one stop wins too: a stop that comes while the voice connection is
still being set up waits for it, then stops it. A recording whose stop failed (its index locked by
another process, say) leaves the registry at once, so its guild may record
again, and the registry keeps trying to finish it in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Awaitable, Callable

import discord

from bot.announce import RECORDING_NOTICE, Announcer
from bot.recovery import close_unfinished
from bot.session import RecordingSession, SessionLimits, StopReason
from bot.storage import AsyncRecordingStore, Manifest, Recording, StorageError
from bot.summary import suspended_text
from sinks import WorkerPool

__all__ = ["RecordingRegistry", "GuildRecording", "Stopped", "AlreadyRecording", "NothingToStop"]

_log = logging.getLogger(__name__)

#: Seconds between tries to finish a recording whose stop failed; the last repeats.
FINISH_RETRY_SECONDS = (5.0, 15.0, 30.0, 60.0)


#: Told of every recording that left the registry (stopped, or its start failed), with its channel.
OnEnded = Callable[[discord.VoiceChannel | discord.StageChannel], None]


class AlreadyRecording(Exception):
    """The guild has a recording already (running, starting or stopping)."""


class NothingToStop(Exception):
    """The guild has no recording that this stop could end (none, or another stop has it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stopped:
    """What a stop ended."""

    recording_id: str
    #: The finished recording's manifest; None when it could not be finished (logged,
    #: and the registry keeps trying).
    manifest: Manifest | None


@dataclasses.dataclass(slots=True)
class GuildRecording:
    """One guild's running recording."""

    session: RecordingSession
    #: Where the stop summary goes: the channel ``/record start`` came from.
    report_channel: discord.abc.Messageable | None
    #: Members whose audio is never written; the session reads this very set.
    opted_out: set[int]
    #: Set once the start is over, joined or failed.
    started: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class RecordingRegistry:
    """Starts, finds and stops the recordings of every guild."""

    def __init__(self, store: AsyncRecordingStore, limits: SessionLimits, workers: WorkerPool,
                 announcer: Announcer) -> None:
        self._store = store
        self._limits = limits
        self._workers = workers
        self._announcer = announcer
        self._running: dict[int, GuildRecording] = {}
        self._retries: set[asyncio.Task[None]] = set()
        self._end_listeners: list[OnEnded] = []

    def add_end_listener(self, listener: OnEnded) -> None:
        """Call ``listener(channel)`` whenever a guild's recording leaves the registry."""
        self._end_listeners.append(listener)

    def session(self, guild_id: int) -> RecordingSession | None:
        """The guild's running recording, if any."""
        record = self._running.get(guild_id)
        return record.session if record is not None else None

    async def start(self, channel: discord.VoiceChannel | discord.StageChannel, *,
                    report_channel: discord.abc.Messageable | None) -> RecordingSession:
        """Record ``channel``; reports go to ``report_channel``.

        Raises :class:`AlreadyRecording` when the guild has a recording (this
        check and the registration happen without yielding, so of two starts
        exactly one gets here), else what joining raised.
        """
        session = await self._admit(channel, report_channel, lambda session: session.start())
        await self._announcer.post(channel, RECORDING_NOTICE)
        return session

    async def resume(self, channel: discord.VoiceChannel | discord.StageChannel, recording: Recording,
                     earlier_talk: dict[int, float], *, report_channel: discord.abc.Messageable | None) -> None:
        """Continue ``recording``, which a restart of the bot interrupted, in ``channel``
        (see :meth:`RecordingSession.resume`). Raises :class:`AlreadyRecording` when the
        guild records already, else what joining raised; the recording is then left as it was.
        """
        await self._admit(channel, report_channel, lambda session: session.resume(recording, earlier_talk))

    async def _admit(self, channel: discord.VoiceChannel | discord.StageChannel,
                     report_channel: discord.abc.Messageable | None,
                     begin: Callable[[RecordingSession], Awaitable[object]]) -> RecordingSession:
        """Register the guild's one recording and ``begin`` its session (start or resume).

        The check and the registration happen without yielding, so of two
        concurrent admissions exactly one gets past :class:`AlreadyRecording`.
        """
        guild_id = channel.guild.id
        if guild_id in self._running:
            raise AlreadyRecording(guild_id)
        opted_out: set[int] = set()
        session = RecordingSession(self._store, channel, self._limits, self._workers, opted_out=opted_out,
                                   on_auto_stop=self._on_auto_stop)
        record = GuildRecording(session, report_channel, opted_out)
        self._running[guild_id] = record
        try:
            opted_out |= await self._store.opted_out(guild_id)
            await begin(session)
        except BaseException:
            self._forget(record)
            raise
        finally:
            record.started.set()
        return session

    async def stop(self, guild_id: int, reason: StopReason, *,
                   report_channel: discord.abc.Messageable | None) -> Stopped:
        """Finalize the guild's recording.

        When it stops but cannot be finished the error is logged, and the
        registry keeps trying, posting the summary in ``report_channel`` once
        that works. Raises :class:`NothingToStop` when there is no
        recording, its start failed, or another stop already ended it.
        """
        record = self._running.get(guild_id)
        if record is None:
            raise NothingToStop(guild_id)
        await record.started.wait()  # a stop during the voice connect stops what it brings
        if not self._holds(record) or record.session.stopping:
            raise NothingToStop(guild_id)
        manifest = await self._stop(record, reason)
        assert record.session.recording is not None  # started, and not forgotten as a failed start
        if manifest is None:
            self._finish_later(record.session, report_channel)
        return Stopped(record.session.recording.id, manifest)

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """Persist the choice and apply it to the guild's running recording at once."""
        await self._store.set_opt_out(guild_id, user_id, opted_out)
        record = self._running.get(guild_id)
        if record is None:
            return
        if opted_out:
            record.opted_out.add(user_id)
        else:
            record.opted_out.discard(user_id)

    async def stop_all(self, reason: StopReason, *, pause: bool) -> None:
        """Shutdown: with ``pause``, suspend every recording whose channel still has people
        in it, for the next start to resume; finalize the others (no retries: the next
        start closes what could not be finished). Each is announced."""
        for record in list(self._running.values()):
            await record.started.wait()
            if not self._holds(record):  # its start failed meanwhile
                continue
            if record.session.stopping:  # whoever began this stop announces it; wait for its files all the same
                with contextlib.suppress(Exception):
                    await record.session.stop(reason)
                continue
            if pause and record.session.has_humans():
                await self._suspend(record)
                continue
            try:
                manifest = await self._stop(record, reason)
                if manifest is not None:
                    await self._announcer.stopped(record.report_channel, reason, manifest)
                elif record.session.recording is not None:
                    _log.error("finalizing the recording of guild %s at shutdown failed; the next start closes it",
                               record.session.guild.id)
                    await self._announcer.unfinished(record.report_channel, reason, record.session.recording.id,
                                                     retrying=False)
            except Exception:  # keep finalizing the other guilds' recordings
                _log.exception("finalizing the recording of guild %s at shutdown failed", record.session.guild.id)

    async def _suspend(self, record: GuildRecording) -> None:
        """Suspend ``record`` for the next start and say so (a failure is logged: the next
        start finds it unfinished and resumes it or repairs it like a crash)."""
        recording = record.session.recording
        assert recording is not None
        try:
            await record.session.suspend()
        except Exception:  # the files are whole or the next start repairs them; the index decides
            _log.exception("suspending recording %s for a restart failed", recording.id)
            return
        finally:
            self._forget(record)
        await self._announcer.post(record.report_channel, suspended_text(recording.id))

    def close(self) -> None:
        """End the tries to finish recordings whose stop failed (the next start closes them)."""
        for task in self._retries:
            task.cancel()

    async def _stop(self, record: GuildRecording, reason: StopReason) -> Manifest | None:
        """Stop ``record``'s session and forget the record; None (logged) when finishing failed."""
        try:
            return await record.session.stop(reason)
        except Exception:  # e.g. the index locked by another process; the guild is free all the same
            recording_id = record.session.recording.id if record.session.recording else "?"
            _log.exception("recording %s stopped (%s) but could not be finished", recording_id, reason.text)
            return None
        finally:
            self._forget(record)

    def _holds(self, record: GuildRecording) -> bool:
        """Whether ``record`` is still its guild's running recording."""
        return self._running.get(record.session.guild.id) is record

    def _forget(self, record: GuildRecording) -> None:
        """The one place a record leaves the registry (once, and never a newer one of its guild)."""
        if self._holds(record):
            del self._running[record.session.guild.id]
            for listener in self._end_listeners:
                listener(record.session.channel)

    async def _on_auto_stop(self, session: RecordingSession, reason: StopReason, manifest: Manifest | None) -> None:
        """The session stopped by itself (see :data:`bot.session.OnAutoStop`)."""
        record = self._running.get(session.guild.id)
        channel = None
        if record is not None and record.session is session:
            channel = record.report_channel
            self._forget(record)
        if manifest is not None:
            await self._announcer.stopped(channel, reason, manifest)
        elif session.recording is not None:
            self._finish_later(session, channel)
            await self._announcer.unfinished(channel, reason, session.recording.id, retrying=True)

    def _finish_later(self, session: RecordingSession, channel: discord.abc.Messageable | None) -> None:
        """Keep trying, in the background, to close the recording whose stop just failed."""
        assert session.recording is not None
        recording_id = session.recording.id
        task = asyncio.ensure_future(self._finish_in_retries(session, channel))
        task.set_name(f"finish recording {recording_id}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _finish_in_retries(self, session: RecordingSession, channel: discord.abc.Messageable | None) -> None:
        """Finish the session's recording as its stop would have (every speaker named and
        counted) once the index lets it; when the stop failed before its tracks were
        closed, repair them like a crash's and mark the recording interrupted."""
        assert session.recording is not None
        recording_id = session.recording.id
        delays = itertools.chain(FINISH_RETRY_SECONDS, itertools.repeat(FINISH_RETRY_SECONDS[-1]))
        while True:
            await asyncio.sleep(next(delays))
            try:
                if session.tracks_closed:
                    final = await session.finish_in_index()
                else:
                    final = await asyncio.to_thread(close_unfinished, self._store.store, recording_id)
                break
            except StorageError as exc:  # deleted meanwhile: nothing left to finish
                _log.warning("recording %s can no longer be finished: %s", recording_id, exc)
                return
            except Exception as exc:  # the traceback was logged at the first failure
                _log.warning("recording %s still cannot be finished (%s); trying again", recording_id, exc)
        _log.info("recording %s finished after its stop had failed", recording_id)
        await self._announcer.finished_late(channel, final)
