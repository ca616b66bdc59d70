"""The bot client: sessions per guild, storage, the download server, commands."""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

import aiohttp
import discord
from discord import app_commands

from bot.commands import RecordGroup, RecordingsGroup
from bot.config import Settings
from bot.invite import PERMISSION_REASONS, invite_url
from bot.session import RecordingSession, SessionLimits, StopReason
from bot.storage import AsyncRecordingStore, Manifest, Recording, RecordingStore, StorageError
from bot.summary import recording_summary, unfinished_text
from bot.tree import TrackedCommandTree
from bot.web import WebServer, create_app, download_url
from bot.web.exports import write_zip
from sinks import WorkerPool

__all__ = ["RecorderBot"]

_log = logging.getLogger(__name__)

_RETENTION_SWEEP_SECONDS = 3600.0
#: How long shutdown lets running commands (a /record stop sending its files) finish.
_COMMAND_DRAIN_SECONDS = 20.0
#: Attachments are refused above the limit; leave room for the multipart envelope.
_UPLOAD_MARGIN = 64 * 1024
#: Seconds between tries to finish a recording whose stop failed; the last repeats.
_FINISH_RETRY_SECONDS = (5.0, 15.0, 30.0, 60.0)
#: Worker threads shared by every recording. libopus decodes without the GIL,
#: so two decode side by side: at 400 speakers over eight connections (DAVE on)
#: one worker dropped 144,234 packets, two dropped none
#: (python -m tests.bench load --only ours --dave on --no-single --steps 350,400).
_RECORDING_WORKERS = 2


class RecorderBot(discord.AutoShardedClient):
    """A Discord client that records voice channels on slash commands.

    Only the non-privileged ``guilds`` and ``voice_states`` intents are used:
    the bot needs channels, roles and who is in voice, nothing else.
    """

    def __init__(self, settings: Settings, *, connector: aiohttp.BaseConnector | None = None) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.voice_states = True
        super().__init__(
            intents=intents,
            connector=connector,
            shard_count=settings.shard_count,
            shard_ids=list(settings.shard_ids) if settings.shard_ids is not None else None,
        )
        self.settings = settings
        self.store = RecordingStore(settings.recordings_dir, settings.database_path, settings.retention_days)
        self.astore = AsyncRecordingStore(self.store)
        self.tree = TrackedCommandTree(self)
        self.tree.on_error = self._on_command_error
        self.web = WebServer(create_app(self.store), settings.http_host, settings.http_port)
        self.limits = SessionLimits(
            max_seconds=settings.max_recording_seconds,
            min_free_disk_mb=settings.min_free_disk_mb,
            empty_channel_seconds=settings.empty_channel_minutes * 60.0,
        )
        #: The recording worker threads, one pool for every guild's recording (see sinks.worker).
        self.recording_workers = WorkerPool(_RECORDING_WORKERS, name="recordings")
        self._sessions: dict[int, RecordingSession] = {}
        self._report_channels: dict[int, discord.abc.Messageable] = {}
        self._opt_outs: dict[int, set[int]] = {}
        self._recovered: list[Recording] = []
        self._background: set[asyncio.Task[Any]] = set()

    # -- start-up and shutdown ----------------------------------------------

    async def setup_hook(self) -> None:
        """Repair what a crash left, start the download server, register commands."""
        self._recovered = await self.astore.recover()
        await self.astore.expire()
        await self.web.start()
        self.tree.add_command(RecordGroup(self))
        self.tree.add_command(RecordingsGroup(self))
        await self.tree.sync()
        self._spawn(self._retention_loop(), "retention")
        assert self.application_id is not None
        reasons = "; ".join(f"{name.replace('_', ' ')}: to {why}" for name, why in PERMISSION_REASONS.items())
        _log.info("invite the bot with %s", invite_url(self.application_id))
        _log.info("permissions asked for and why: %s", reasons)
        _log.info("download links start with %s", self.settings.public_url)

    async def on_ready(self) -> None:
        """Tell guilds about the recordings the start-up closed (once): cut by a crash, or left unfinished."""
        _log.info("connected as %s to %d guild(s)", self.user, len(self.guilds))
        recovered, self._recovered = self._recovered, []
        for recording in recovered:
            await self._announce_recovered(recording)

    async def close(self) -> None:
        """Let running commands answer, finalize every recording (SIGTERM lands here), then disconnect."""
        await self.tree.wait_idle(_COMMAND_DRAIN_SECONDS)
        reason = StopReason("the bot is shutting down", automatic=True)
        for guild_id in list(self._sessions):
            channel = self._report_channels.get(guild_id)
            session = self._sessions.get(guild_id)
            if session is None:  # stopped by itself while an earlier guild's was finalized
                continue
            manifest = None
            try:
                manifest = await self.stop_session(guild_id, reason)
                await self._announce_stop(channel, reason, manifest)
            except Exception:  # keep finalizing the other guilds' recordings
                _log.exception("finalizing the recording of guild %s at shutdown failed", guild_id)
                if manifest is None and session.recording is not None:  # as a stop that fails while running
                    await self._notify_unfinished(channel, reason, session.recording.id, retrying=False)
        await asyncio.to_thread(self.recording_workers.close)
        for task in self._background:
            task.cancel()
        await self.web.stop()
        await super().close()
        self.store.close()

    # -- sessions -------------------------------------------------------------

    def session_for(self, guild_id: int) -> RecordingSession | None:
        """The guild's running recording, if any."""
        return self._sessions.get(guild_id)

    async def start_session(self, channel: discord.VoiceChannel | discord.StageChannel,
                            interaction: discord.Interaction) -> RecordingSession:
        """Start recording `channel`; reports go to the channel the command came from."""
        guild_id = channel.guild.id
        opted_out = self._opt_outs.setdefault(guild_id, set())
        opted_out |= await self.astore.opted_out(guild_id)
        session = RecordingSession(self.store, channel, self.limits, self.recording_workers, opted_out=opted_out,
                                   on_auto_stop=self._on_auto_stop, started_by=interaction.user.id)
        self._sessions[guild_id] = session
        try:
            await session.start()
        except BaseException:
            self._sessions.pop(guild_id, None)
            raise
        if isinstance(interaction.channel, discord.abc.Messageable):
            self._report_channels[guild_id] = interaction.channel
        await self._notify_channel(channel, "\N{LARGE RED CIRCLE} This channel is being recorded (one file per "
                                            "speaker). `/record optout` keeps your voice out of it.")
        return session

    async def stop_session(self, guild_id: int, reason: StopReason) -> Manifest:
        """Finalize the guild's recording and forget the session."""
        session = self._sessions[guild_id]
        try:
            return await session.stop(reason)
        finally:
            self._sessions.pop(guild_id, None)
            self._report_channels.pop(guild_id, None)

    async def _on_auto_stop(self, session: RecordingSession, reason: StopReason, manifest: Manifest | None) -> None:
        self._sessions.pop(session.guild.id, None)
        channel = self._report_channels.pop(session.guild.id, None)
        if manifest is not None:
            await self._announce_stop(channel, reason, manifest)
        elif session.recording is not None:  # could not be finished; the session logged why
            self.finish_later(session, channel)
            await self._notify_unfinished(channel, reason, session.recording.id, retrying=True)

    async def _notify_unfinished(self, channel: discord.abc.Messageable | None, reason: StopReason,
                                 recording_id: str, *, retrying: bool) -> None:
        await self._notify_channel(channel, f"Recording stopped: {reason.text}.\n"
                                            f"{unfinished_text(recording_id, retrying=retrying)}")

    def finish_later(self, session: RecordingSession, channel: discord.abc.Messageable | None) -> None:
        """Keep trying, in the background, to close the recording whose stop just failed;
        post its summary in `channel` once that works. Shutdown ends the tries (the next
        start closes the recording: ``RecordingStore.recover``)."""
        assert session.recording is not None
        recording_id = session.recording.id
        self._spawn(self._finish_in_retries(recording_id, session.pending_manifest, channel),
                    f"finish recording {recording_id}")

    async def _finish_in_retries(self, recording_id: str, manifest: Manifest | None,
                                 channel: discord.abc.Messageable | None) -> None:
        delays = itertools.chain(_FINISH_RETRY_SECONDS, itertools.repeat(_FINISH_RETRY_SECONDS[-1]))
        while True:
            await asyncio.sleep(next(delays))
            try:
                final = await self.astore.close_unfinished(recording_id, manifest)
                break
            except StorageError as exc:  # deleted meanwhile: nothing left to finish
                _log.warning("recording %s can no longer be finished: %s", recording_id, exc)
                return
            except Exception as exc:  # the traceback was logged at the first failure
                _log.warning("recording %s still cannot be finished (%s); trying again", recording_id, exc)
        _log.info("recording %s finished after its stop had failed", recording_id)
        done = "finished" if final.status == "finished" else "repaired and kept as far as it was written"
        await self._announce(channel, f"Recording `{recording_id}` is {done} now.", final)

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """Persist the choice and apply it to a running recording at once."""
        await self.astore.set_opt_out(guild_id, user_id, opted_out)
        live = self._opt_outs.setdefault(guild_id, set())
        if opted_out:
            live.add(user_id)
        else:
            live.discard(user_id)

    # -- reporting ------------------------------------------------------------

    async def summary_and_zip(self, manifest: Manifest, upload_limit: int) -> tuple[str, discord.File | None]:
        """The summary text, and the ZIP of all tracks when it fits `upload_limit`."""
        recording = await self.astore.get(manifest.recording_id)
        assert recording is not None
        names = [s.file for s in manifest.speakers]
        total = sum((recording.directory / n).stat().st_size for n in names)
        text = recording_summary(manifest, total, download_url(self.settings.public_url, recording))
        if not names:
            return text, None
        zipped = await asyncio.to_thread(_zip_if_fits, recording, names, total, upload_limit - _UPLOAD_MARGIN)
        if zipped is None:
            return text + "\n(The ZIP is larger than this server's upload limit: use the link.)", None
        return text, discord.File(zipped, filename=f"recording-{recording.id}.zip")

    async def send_with_optional_file(self, send: Callable[..., Awaitable[Any]], text: str,
                                      file: discord.File | None, **kwargs: Any) -> None:
        """Send `text` with `file`; if Discord refuses the upload, send the text alone."""
        if file is None:
            await send(text, **kwargs)
            return
        try:
            await send(text, file=file, **kwargs)
        except discord.HTTPException as exc:
            if exc.status != 413:
                raise
            _log.info("upload refused as too large; sending the link only")
            await send(text + "\n(Discord refused the attachment as too large: use the link.)", **kwargs)

    async def _announce_stop(self, channel: discord.abc.Messageable | None, reason: StopReason,
                             manifest: Manifest) -> None:
        await self._announce(channel, f"Recording stopped: {reason.text}.", manifest)

    async def _announce(self, channel: discord.abc.Messageable | None, head: str, manifest: Manifest) -> None:
        """Post `head`, the recording's summary and (when it fits) its ZIP in `channel`."""
        if channel is None:
            return
        limit = getattr(getattr(channel, "guild", None), "filesize_limit", 10 * 1024 * 1024)
        text, file = await self.summary_and_zip(manifest, limit)
        try:
            await self.send_with_optional_file(channel.send, f"{head}\n{text}", file)
        except discord.HTTPException as exc:
            _log.warning("could not announce the end of recording %s: %s", manifest.recording_id, exc)

    async def _announce_recovered(self, recording: Recording) -> None:
        guild = self.get_guild(recording.guild_id)
        if guild is None:
            return
        channel = guild.get_channel(recording.channel_id) or guild.system_channel
        if channel is None:
            return
        link = download_url(self.settings.public_url, recording)
        if recording.status == "finished":  # it had stopped; only its index entry was left behind
            text = (f"Recording `{recording.id}` of **{recording.channel_name}**, which could not be finished "
                    f"before the bot stopped, is finished now: {link}")
        else:
            text = (f"The bot stopped unexpectedly while recording **{recording.channel_name}**. The recording "
                    f"`{recording.id}` was repaired and kept up to the moment it stopped: {link}")
        await self._notify_channel(channel, text)

    async def _notify_channel(self, channel: Any, text: str) -> None:
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            await channel.send(text)
        except discord.HTTPException as exc:
            _log.info("could not post in channel %s: %s", getattr(channel, "id", "?"), exc)

    async def on_app_command_completion(self, interaction: discord.Interaction, _command: object) -> None:
        """discord.py's event after a command callback returned."""
        self.tree.finished(interaction)

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        try:
            await self._report_command_error(interaction, error)
        finally:
            self.tree.finished(interaction)

    async def _report_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.CheckFailure) and interaction.response.is_done():
            return  # a refused check (RecordingsGroup.interaction_check) has already told the user why
        _log.error("command /%s failed", interaction.command.qualified_name if interaction.command else "?",
                   exc_info=error)
        text = "Something went wrong on the bot's side; the error was logged."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            pass  # the interaction expired; the log has the error

    # -- housekeeping ---------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(_RETENTION_SWEEP_SECONDS)
            try:
                await self.astore.expire()
            except Exception:  # retry at the next sweep
                _log.exception("retention sweep failed")

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _zip_if_fits(recording: Recording, names: list[str], tracks_bytes: int, limit: int) -> IO[bytes] | None:
    """Write the ZIP to an anonymous temporary file; None when it exceeds `limit`.

    Stored ZIP size is known before writing (tracks plus small headers), so a
    recording far over the limit costs no copy at all.
    """
    if limit <= 0:
        return None
    if tracks_bytes > limit:
        return None
    out = tempfile.TemporaryFile()
    write_zip(recording.directory, names, out.write)
    if out.tell() > limit:
        out.close()
        return None
    out.seek(0)
    return out
