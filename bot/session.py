"""One recording in one guild: join, record, watch for reasons to stop, finalize.

A shutdown may instead pause it for a restart (:meth:`RecordingSession.suspend`),
and the next process continue it in the same files on the same timeline
(:meth:`RecordingSession.resume`).

The session owns the voice connection, the AudioSink and the storage record
of one recording. Everything here runs on the bot's event loop; the only
blocking step (closing the sink: waiting for its workers to finish the files) runs
in a thread so the loop keeps answering Discord.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import discord

from bot.nickname import NicknameMark
from bot.storage import AsyncRecordingStore, IndexUnavailable, Manifest, Recording, free_disk_mb
from bot.summary import plain, write_failure
from bot.units import duration
from bot.voice.client import RecordingVoiceClient
from bot.voice.reader import ReaderFailure
from bot.voice.stats import ReceiveStats, RecordingStats
from sinks import AudioSink, EngineStats, WorkerPool

__all__ = ["SessionLimits", "RecordingSession", "StopReason"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionLimits:
    """When a recording stops by itself."""

    max_seconds: float
    min_free_disk_mb: int
    empty_channel_seconds: float
    check_interval: float = 1.0
    voice_connect_timeout: float = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class StopReason:
    """Why a recording ended, in words for the channel, and who ended it."""

    text: str
    by_user: int | None = None
    automatic: bool = False


#: Called once the session has stopped on its own, with the summary to announce, or
#: None when the recording could not be finished (the error is logged; the index
#: still says "recording" until the registry's retry of it succeeds).
OnAutoStop = Callable[["RecordingSession", StopReason, Manifest | None], Awaitable[None]]


class RecordingSession:
    """A recording of one voice channel. Use :meth:`start`, then :meth:`stop` once."""

    def __init__(
        self,
        store: AsyncRecordingStore,
        channel: discord.VoiceChannel | discord.StageChannel,
        limits: SessionLimits,
        workers: WorkerPool,
        *,
        opted_out: set[int],
        on_auto_stop: OnAutoStop,
    ) -> None:
        self.store = store
        self.channel = channel
        self.guild = channel.guild
        self.limits = limits
        self.workers = workers
        #: Live set: /record optout during a recording takes effect at once. Read
        #: by the socket thread (membership test is atomic under the GIL).
        self.opted_out = opted_out
        self.recording: Recording | None = None
        self.voice: RecordingVoiceClient | None = None
        self.sink: AudioSink | None = None
        self.started_monotonic = 0.0
        self._on_auto_stop = on_auto_stop
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[Manifest | None] | None = None
        #: The engine's last counts, once the stop has closed every track: from then on
        #: :meth:`finish_in_index` can finish the recording, again if it failed.
        self._final_stats: EngineStats | None = None
        #: Display names of everyone heard, learned while they were in voice: without the
        #: members intent discord.py forgets a member once they leave the channel.
        self._names: dict[int, str] = {}
        #: The name the index has for each speaker (a placeholder until the name is learned).
        self._noted: dict[int, str] = {}
        #: Whether the last try to write speakers' names found the index unreachable (warned once).
        self._index_lost = False
        self._mark = NicknameMark(self.guild)
        self._empty_since: float | None = None
        #: Talk seconds per user recorded before a restart (see :meth:`resume`).
        self._earlier_talk: dict[int, float] = {}

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> Recording:
        """Join the channel and begin recording.

        Raises:
            discord.ClientException / asyncio.TimeoutError: joining voice failed
            (nothing is left behind: no recording row, no connection).
        """
        voice = await self._connect()
        try:
            # One reading of both clocks: the index's start is the timeline's sample 0,
            # which a resume after a restart finds again from the wall clock.
            origin, started_at = time.monotonic(), datetime.now(UTC)
            recording = await self.store.create(self.guild.id, self.guild.name, self.channel.id, self.channel.name,
                                                started_at=started_at)
            self.recording = recording
            self.sink = AudioSink(recording.directory, channels=recording.channels, pool=self.workers, origin=origin)
            self.started_monotonic = origin
            voice.start_recording(self.sink, should_record=self._should_record)
        except BaseException:
            await self._abandon_start()
            raise
        self._begin_watch()
        await self._mark.put_on()
        _log.info("recording %s started in guild %s channel %s", recording.id, self.guild.id, self.channel.id)
        return recording

    async def resume(self, recording: Recording, earlier_talk: dict[int, float]) -> None:
        """Rejoin the channel and continue ``recording``, which a restart of the bot
        interrupted, on its own timeline: every track is appended to where it ended,
        the time the bot was away is silence, and the limits count the whole recording.

        ``earlier_talk`` is each speaker's talk seconds before the restart. Raises
        what joining raised (the recording is left as it was).
        """
        # The names the index has: a speaker who left while the bot was away is no longer in its cache.
        self._names = {s.user_id: s.display_name for s in (await self.store.new_manifest(recording)).speakers}
        self._noted = dict(self._names)
        voice = await self._connect()
        self.recording = recording
        self._earlier_talk = dict(earlier_talk)
        try:
            origin = time.monotonic() - (time.time() - recording.started_at.timestamp())
            self.sink = AudioSink(recording.directory, channels=recording.channels, pool=self.workers,
                                  origin=origin, resume=True)
            self.started_monotonic = origin
            voice.start_recording(self.sink, should_record=self._should_record)
            await self.store.resumed(recording.id)
        except BaseException:
            if self.sink is not None:
                await asyncio.to_thread(self.sink.close)
            await voice.disconnect(force=True)
            raise
        self._begin_watch()
        await self._mark.put_on()
        _log.info("recording %s resumed in guild %s channel %s", recording.id, self.guild.id, self.channel.id)

    async def _connect(self) -> RecordingVoiceClient:
        self.voice = await self.channel.connect(
            cls=RecordingVoiceClient, timeout=self.limits.voice_connect_timeout, self_deaf=False, self_mute=True,
        )
        return self.voice

    def _begin_watch(self) -> None:
        assert self.recording is not None
        self._watch_task = asyncio.create_task(self._watch(), name=f"recording-watch-{self.recording.id}")

    async def _abandon_start(self) -> None:
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
        if self.recording is not None:
            await self.store.delete(self.recording.id)
            self.recording = None
        if self.voice is not None:
            await self.voice.disconnect(force=True)

    def _should_record(self, user_id: int) -> bool:
        return user_id not in self.opted_out

    async def stop(self, reason: StopReason) -> Manifest | None:
        """Finalize the recording (idempotent: a second call, whatever its reason, waits for the first).

        The stop is claimed before the first await, so a caller that checked
        :attr:`stopping` and calls this without yielding in between is the only
        one that stops it (:mod:`bot.registry` relies on it). None when the
        recording was suspended (:meth:`suspend`) rather than finished.
        """
        if self._stopping is None:
            self._claim_stop(self._stop(reason))
        assert self._stopping is not None
        return await asyncio.shield(self._stopping)

    async def suspend(self) -> None:
        """Pause the recording for a restart of the bot (shutdown while people are in
        the channel): receiving stops, every track is padded to the same length and
        made whole under its raw name, the bot leaves, and the index marks it
        suspended, so the next start resumes it (or finishes it when nobody is left).
        Like :meth:`stop`, it claims the end of the session; a stop already begun wins.
        """
        if self._stopping is None:
            self._claim_stop(self._suspend())
        assert self._stopping is not None
        await asyncio.shield(self._stopping)

    def _claim_stop(self, ending: Awaitable[Manifest | None]) -> None:
        # Only here is the caller the current task: the watch task, when it
        # stops the recording itself, must not cancel its own wait for the
        # result (it still has to announce the stop).
        if self._watch_task is not None and self._watch_task is not asyncio.current_task():
            self._watch_task.cancel()
        self._stopping = asyncio.ensure_future(ending)

    async def _suspend(self) -> None:
        assert self.recording is not None and self.sink is not None and self.voice is not None
        if self.voice.is_recording():
            self.voice.stop_recording()
        try:
            await asyncio.to_thread(self.sink.close)
            await self._note_speakers(self.sink.stats())
            await self.store.suspend(self.recording.id, datetime.now(UTC))
        finally:
            await self._leave()
        _log.info("recording %s suspended for a restart of the bot", self.recording.id)

    def has_humans(self) -> bool:
        """Whether anyone but bots is in the recorded channel."""
        return any(not m.bot for m in self.channel.members)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` has begun."""
        return self._stopping is not None

    async def _stop(self, reason: StopReason) -> Manifest:
        assert self.recording is not None and self.sink is not None and self.voice is not None
        try:
            await self.store.mark_stopping(self.recording)
        except OSError as exc:  # a full disk, say: the stop goes on; only a restart could mistake it
            _log.warning("could not mark recording %s as stopping: %s", self.recording.id, exc.strerror)
        stats = self.voice.stop_recording() if self.voice.is_recording() else None
        try:
            await asyncio.to_thread(self.sink.close)
            self._final_stats = self.sink.stats()
        finally:
            # Leave even when that failed: a voice connection left behind would keep
            # the guild from recording again ("Already connected to a voice channel").
            await self._leave()
        final = await self.finish_in_index()
        _log.info("recording %s stopped (%s); receive %s", self.recording.id, reason.text,
                  stats.receive.as_dict() if stats else "n/a")
        return final

    @property
    def tracks_closed(self) -> bool:
        """Whether the stop closed every track, so :meth:`finish_in_index` can finish the recording."""
        return self._final_stats is not None

    async def finish_in_index(self) -> Manifest:
        """The stop's last part, the only one that needs the index: name every speaker
        heard, describe each track and finish the recording. Safe to repeat after a
        failure (the index unreachable, say): the registry retries it until it works."""
        assert self.recording is not None and self._final_stats is not None
        sink_stats = self._final_stats
        await self._note_speakers(sink_stats)
        manifest = await self.store.new_manifest(self.recording)
        for speaker in manifest.speakers:
            user = sink_stats.per_user.get(speaker.user_id)
            speaker.talk_seconds = round(user.talk_seconds if user is not None else 0.0, 2)
            speaker.packets = user.packets if user is not None else None
            speaker.losses = user.lost if user is not None else None
        if self._earlier_talk:
            # Counted since the restart only: the packets before it are not known any more.
            for speaker in manifest.speakers:
                speaker.talk_seconds = round((speaker.talk_seconds or 0.0)
                                             + self._earlier_talk.get(speaker.user_id, 0.0), 2)
                speaker.packets = speaker.losses = None
        return await self.store.finish(self.recording.id, manifest)

    async def _leave(self) -> None:
        """Disconnect from voice and restore the nickname; a failure is logged, not raised."""
        assert self.voice is not None and self.recording is not None
        try:
            if self._voice_alive():
                await self.voice.disconnect(force=True)
        except Exception:  # the connection may already be gone; the recording is what matters
            _log.warning("voice disconnect after recording %s failed", self.recording.id, exc_info=True)
        await self._mark.take_off()

    # -- status --------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since recording began."""
        return time.monotonic() - self.started_monotonic

    def timeline_seconds(self) -> float:
        """Where this moment falls on the recording's timeline: seconds since the sink's
        sample 0, on the clock the engine places every packet's arrival with."""
        assert self.sink is not None
        return time.monotonic() - self.sink.started_at

    def stats(self) -> RecordingStats:
        """Receive and sink counters of the running recording (the receive ones all 0 once receiving stopped)."""
        assert self.voice is not None and self.sink is not None
        if self.voice.is_recording():
            return self.voice.recording_stats()
        return RecordingStats(receive=ReceiveStats(), engine=self.sink.stats())

    def display_name(self, user_id: int) -> str:
        """The member's display name as the guild knows it (or knew it while they
        were in the channel), else a placeholder."""
        member = self.guild.get_member(user_id)
        if member is not None:
            return member.display_name
        return self._names.get(user_id, f"user-{user_id}")

    # -- watching ------------------------------------------------------------

    async def _watch(self) -> None:
        """Check once per interval whether the recording must stop by itself."""
        try:
            while True:
                await asyncio.sleep(self.limits.check_interval)
                reason = await self._auto_stop_reason()
                if reason is not None:
                    break
        except asyncio.CancelledError:
            return
        except Exception:  # a broken check must not leave a recording running unwatched
            _log.exception("recording watch failed; stopping the recording")
            reason = StopReason("an internal error occurred while recording", automatic=True)
        manifest: Manifest | None
        try:
            manifest = await self.stop(reason)
        except Exception:  # e.g. the index locked by another process: the bot must still let go and say so
            assert self.recording is not None
            _log.exception("recording %s stopped (%s) but could not be finished", self.recording.id, reason.text)
            manifest = None
        await self._on_auto_stop(self, reason, manifest)

    async def _auto_stop_reason(self) -> StopReason | None:
        assert self.voice is not None and self.sink is not None and self.recording is not None
        limits = self.limits
        sink_stats = self.sink.stats()
        try:
            await self._note_speakers(sink_stats)
        except IndexUnavailable as exc:  # the tracks go on; the names are written once the index is back
            if not self._index_lost:
                _log.warning("recording %s goes on without the index for now: %s", self.recording.id, exc)
            self._index_lost = True
        else:
            if self._index_lost:
                _log.info("recording %s: the index is back", self.recording.id)
            self._index_lost = False
        if sink_stats.failure is not None:
            return StopReason(f"writing the recording failed: {write_failure(sink_stats.failure.errno)}",
                              automatic=True)
        if isinstance(self.voice.receive_error, ReaderFailure):
            return StopReason("the bot could no longer read the voice connection", automatic=True)
        if self.voice.receive_error is not None:
            return StopReason("the voice connection broke (Discord's encryption handshake failed)",
                              automatic=True)
        if self.elapsed() >= limits.max_seconds:
            return StopReason(f"the maximum recording length ({duration(limits.max_seconds)}) was reached",
                              automatic=True)
        free = await asyncio.to_thread(free_disk_mb, self.recording.directory)
        if free < limits.min_free_disk_mb:
            return StopReason(f"free disk space fell below {limits.min_free_disk_mb} MiB", automatic=True)
        me = self.guild.me
        here = me.voice.channel if me is not None and me.voice is not None else None
        if not self._voice_alive():
            return StopReason("the bot was disconnected from the voice channel", automatic=True)
        if here is not None and here.id != self.channel.id:
            return StopReason(f"the bot was moved to {plain(here.name)}", automatic=True)
        now = time.monotonic()
        if self.has_humans():
            self._empty_since = None
        elif self._empty_since is None:
            self._empty_since = now
        elif now - self._empty_since >= limits.empty_channel_seconds:
            return StopReason(
                f"nobody was left in the channel for {duration(limits.empty_channel_seconds)}", automatic=True,
            )
        return None

    def _voice_alive(self) -> bool:
        """Whether discord.py still holds this voice connection. It lets go only for
        good (kicked, channel deleted, reconnect given up); while it reconnects after a
        dropped voice websocket the bot is briefly out of the channel and not connected,
        and the recording must go on."""
        assert self.voice is not None
        return self.guild.voice_client is self.voice

    async def _note_speakers(self, sink_stats: EngineStats) -> None:
        """Remember each new speaker's name in the index as soon as they are heard,
        so even a recording cut short by a crash names its files. The name is learned
        at once, while the member is in voice; the index gets it when it can (after a
        failure, the next call writes it)."""
        assert self.recording is not None
        for user_id in sink_stats.per_user:
            if user_id not in self._names:
                member = self.guild.get_member(user_id)
                if member is not None:
                    self._names[user_id] = member.display_name
            name = self._names.get(user_id) or self.display_name(user_id)  # a placeholder until learned
            if self._noted.get(user_id) == name:
                continue
            await self.store.note_speaker(self.recording.id, user_id, name)
            self._noted[user_id] = name

