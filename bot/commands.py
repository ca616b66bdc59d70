"""The slash commands: /record start|stop|status|note|optout|optin and /recordings list|get|delete."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.access import bot_cannot_record, may_record, who_may_record
from bot.announce import Announcer
from bot.config import Settings
from bot.guild_config import GuildConfig
from bot.notes import NOTE_MAX_CHARS, NOTES_PER_RECORDING, NoteRefused, clean_note
from bot.registry import AlreadyRecording, NothingToStop, RecordingRegistry
from bot.session import StopReason
from bot.storage import MANIFEST_NAME, AsyncRecordingStore, IndexUnavailable, Note, Recording
from bot.summary import plain, recording_line, started_text, status_text, unfinished_text
from bot.units import clock, days

__all__ = ["RecordGroup", "RecordingsGroup"]

_log = logging.getLogger(__name__)

_ALREADY_RECORDING = "A recording is already running in this server. Stop it with `/record stop`."
_NOTHING_RECORDED = "Nothing is being recorded in this server."


async def _refuse(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message(text, ephemeral=True)


class _BotGroup(app_commands.Group):
    """A command group that knows the running recordings, what to post, and who may record."""

    def __init__(self, settings: Settings, registry: RecordingRegistry, announcer: Announcer, config: GuildConfig,
                 *, name: str, description: str) -> None:
        super().__init__(name=name, description=description)
        self.settings = settings
        self.registry = registry
        self.announcer = announcer
        self.config = config

    async def _who_may_record(self, guild: discord.Guild) -> str:
        roles = (await self.config.get(guild.id)).recorder_role_ids
        return who_may_record(guild, self.settings.recorder_role, roles)

    async def _check_recorder(self, interaction: discord.Interaction) -> bool:
        """True when the invoker may record; otherwise tell them who may and return False."""
        assert interaction.guild is not None
        roles = (await self.config.get(interaction.guild.id)).recorder_role_ids
        if may_record(interaction.user, interaction.permissions, self.settings.recorder_role, roles):
            return True
        await _refuse(interaction, f"Only {who_may_record(interaction.guild, self.settings.recorder_role, roles)} "
                                   f"may do that.")
        return False


@app_commands.guild_only()
class RecordGroup(_BotGroup):
    """Start, stop and inspect the recording of a voice channel."""

    def __init__(self, settings: Settings, registry: RecordingRegistry, announcer: Announcer,
                 config: GuildConfig) -> None:
        super().__init__(settings, registry, announcer, config, name="record",
                         description="Record a voice channel, one WAV file per speaker")

    @app_commands.command(name="start", description="Start recording a voice channel (default: the one you are in)")
    @app_commands.describe(channel="The voice channel to record; default is the one you are in")
    async def start(self, interaction: discord.Interaction,
                    channel: discord.VoiceChannel | discord.StageChannel | None = None) -> None:
        """Join the channel and record every speaker to their own file."""
        assert interaction.guild is not None
        if not await self._check_recorder(interaction):
            return
        if channel is None:
            voice = getattr(interaction.user, "voice", None)
            channel = voice.channel if voice is not None else None
        if channel is None:
            await _refuse(interaction, "Join a voice channel first, or name one: `/record start channel:#voice`.")
            return
        if self.registry.session(interaction.guild.id) is not None:
            await _refuse(interaction, _ALREADY_RECORDING)
            return
        settings = self.settings
        # A member records only a channel they could join themselves: naming one
        # they cannot see must not let them listen in through the bot.
        theirs = channel.permissions_for(interaction.user) if isinstance(interaction.user, discord.Member) else None
        if theirs is None or not (theirs.view_channel and theirs.connect):
            await _refuse(interaction, f"You can only record a voice channel you may view and connect to "
                                       f"yourself, and {channel.mention} is not one.")
            return
        cannot = bot_cannot_record(channel, settings.recordings_dir, settings.min_free_disk_mb)
        if cannot is not None:
            await _refuse(interaction, cannot)
            return
        # Joining voice and the DAVE handshake can take longer than Discord's 3 s.
        await interaction.response.defer(thinking=True)
        report_channel = interaction.channel if isinstance(interaction.channel, discord.abc.Messageable) else None
        try:
            session = await self.registry.start(channel, report_channel=report_channel)
        except AlreadyRecording:  # another start got there while this one was deferring
            await interaction.followup.send(_ALREADY_RECORDING)
            return
        except Exception as exc:
            _log.warning("starting a recording in guild %s failed: %s", interaction.guild.id, exc, exc_info=True)
            await interaction.followup.send(f"Could not start recording {channel.mention}: {_short(exc)}")
            return
        assert session.recording is not None
        await interaction.followup.send(started_text(channel.mention, session.recording.id,
                                                     await self._who_may_record(interaction.guild),
                                                     settings.max_recording_hours))

    @app_commands.command(name="stop", description="Stop the recording and get the files")
    async def stop(self, interaction: discord.Interaction) -> None:
        """Finalize the running recording and reply with a summary and the files."""
        assert interaction.guild is not None
        if not await self._check_recorder(interaction):
            return
        session = self.registry.session(interaction.guild.id)
        if session is None or session.stopping:
            await _refuse(interaction, _NOTHING_RECORDED)
            return
        await interaction.response.defer(thinking=True)
        reason = StopReason(f"stopped by {plain(interaction.user.display_name)}", by_user=interaction.user.id)
        channel = interaction.channel if isinstance(interaction.channel, discord.abc.Messageable) else None
        try:
            stopped = await self.registry.stop(interaction.guild.id, reason, report_channel=channel)
        except NothingToStop:  # another stop got there first, or the start it waited for failed
            await interaction.followup.send(_NOTHING_RECORDED)
            return
        if stopped.manifest is None:  # e.g. the index locked by another process; the registry keeps trying
            await interaction.followup.send(f"Recording stopped.\n{unfinished_text(stopped.recording_id)}")
            return
        text, file = await self.announcer.summary_and_zip(stopped.manifest, interaction.filesize_limit)
        await self.announcer.send_with_optional_file(interaction.followup.send, text, file)

    @app_commands.command(name="status", description="How the running recording is going")
    async def status(self, interaction: discord.Interaction) -> None:
        """Elapsed time, speakers and their talk time, loss, disk used, worker lag."""
        assert interaction.guild is not None
        session = self.registry.session(interaction.guild.id)
        if session is None:
            await _refuse(interaction, _NOTHING_RECORDED)
            return
        if session.recording is None:
            await _refuse(interaction, "A recording is starting in this server: the bot is joining the channel.")
            return
        stats = session.stats()
        names = {uid: session.display_name(uid) for uid in stats.engine.per_user}
        await interaction.response.send_message(
            status_text(session.channel.name, session.recording.id, session.elapsed(), names, stats), ephemeral=True,
        )

    @app_commands.command(name="note", description="Mark this moment of the recording with a note")
    @app_commands.describe(text=f"What happens now (at most {NOTE_MAX_CHARS} characters); "
                                f"becomes a label and a chapter")
    async def note(self, interaction: discord.Interaction, text: str) -> None:
        """Put a note on the running recording's timeline, at the moment the command arrived."""
        assert interaction.guild is not None
        session = self.registry.session(interaction.guild.id)
        if session is None or session.recording is None or session.stopping:
            await _refuse(interaction, _NOTHING_RECORDED)
            return
        at = session.timeline_seconds()  # first: the moment is now, not after the checks below
        voice = getattr(interaction.user, "voice", None)
        in_channel = voice is not None and voice.channel is not None and voice.channel.id == session.channel.id
        roles = (await self.config.get(interaction.guild.id)).recorder_role_ids
        if not (in_channel or may_record(interaction.user, interaction.permissions, self.settings.recorder_role,
                                         roles)):
            await _refuse(interaction, f"Only members in {session.channel.mention}, or "
                                       f"{who_may_record(interaction.guild, self.settings.recorder_role, roles)}, "
                                       f"may add notes.")
            return
        try:
            line = clean_note(text)
        except NoteRefused as exc:
            await _refuse(interaction, str(exc))
            return
        note = Note(round(at, 3), line, interaction.user.id, interaction.user.display_name)
        if not await session.store.add_note(session.recording.id, note, limit=NOTES_PER_RECORDING):
            await _refuse(interaction, f"This recording has the most notes it may have ({NOTES_PER_RECORDING}).")
            return
        _log.info("note at %.3f s added to recording %s", note.at, session.recording.id)
        await interaction.response.send_message(
            f"\N{MEMO} Note at {clock(note.at)} of recording `{session.recording.id}`: {plain(line)}", ephemeral=True,
        )

    @app_commands.command(name="optout", description="Never record my voice in this server")
    async def optout(self, interaction: discord.Interaction) -> None:
        """Stop recording the invoker, now and in future recordings of this server."""
        assert interaction.guild is not None
        await self.registry.set_opt_out(interaction.guild.id, interaction.user.id, True)
        await interaction.response.send_message(
            "You are opted out: your voice is not recorded in this server, from now on, until `/record optin`.",
            ephemeral=True,
        )

    @app_commands.command(name="optin", description="Allow recording my voice in this server again")
    async def optin(self, interaction: discord.Interaction) -> None:
        """Undo /record optout."""
        assert interaction.guild is not None
        await self.registry.set_opt_out(interaction.guild.id, interaction.user.id, False)
        await interaction.response.send_message("You are opted in again: recordings in this server include you.",
                                                ephemeral=True)


@app_commands.guild_only()
class RecordingsGroup(_BotGroup):
    """This server's past recordings."""

    def __init__(self, settings: Settings, registry: RecordingRegistry, announcer: Announcer, config: GuildConfig,
                 store: AsyncRecordingStore) -> None:
        super().__init__(settings, registry, announcer, config, name="recordings",
                         description="This server's recordings")
        self.store = store

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Every /recordings command needs the recorder permission."""
        return await self._check_recorder(interaction)

    async def _finished_recording(self, interaction: discord.Interaction, recording_id: str) -> Recording | None:
        """This guild's finished recording `recording_id`; otherwise tell the user why not and return None."""
        assert interaction.guild is not None
        recording = await self.store.get(recording_id)
        if recording is None or recording.guild_id != interaction.guild.id:
            await _refuse(interaction, f"This server has no recording `{recording_id}`.")
            return None
        if recording.status == "recording":
            session = self.registry.session(interaction.guild.id)
            if session is not None and session.recording is not None and session.recording.id == recording.id:
                await _refuse(interaction, f"Recording `{recording.id}` is still running; stop it first.")
            else:  # left so by a stop that failed: the bot keeps trying to close it
                await _refuse(interaction, unfinished_text(recording.id))
            return None
        return recording

    @app_commands.command(name="list", description="List this server's recordings")
    async def list_(self, interaction: discord.Interaction) -> None:
        """Newest first, at most 20."""
        assert interaction.guild is not None
        # Expired ones are past their link's life: the retention sweep deletes them soon.
        recordings = [r for r in await self.store.list(interaction.guild.id) if not self.store.is_expired(r)]
        if not recordings:
            await interaction.response.send_message("This server has no recordings.", ephemeral=True)
            return
        lines = [recording_line(r) for r in recordings[:20]]
        if len(recordings) > 20:
            lines.append(f"... and {len(recordings) - 20} older.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @app_commands.command(name="get", description="Get a recording's files")
    @app_commands.describe(recording_id="The recording's id, as /recordings list shows it")
    async def get(self, interaction: discord.Interaction, recording_id: str) -> None:
        """Summary, the download link, and the ZIP when it fits."""
        recording = await self._finished_recording(interaction, recording_id)
        if recording is None:
            return
        if self.store.is_expired(recording):
            assert recording.retention is not None  # nothing expires when recordings are kept forever
            await _refuse(interaction, f"Recording `{recording.id}` has expired (recordings are kept "
                                       f"{days(recording.retention.total_seconds() / 86400)} after they end); "
                                       f"its files are "
                                       f"being deleted.")
            return
        if recording.stored_prefix is not None and not (recording.directory / MANIFEST_NAME).is_file():
            # Its folder went to the object store: no ZIP to attach from here; the page serves every file.
            await interaction.response.send_message(
                f"Recording `{recording.id}` is kept in the object storage: download it from "
                f"{self.announcer.link(recording)}", ephemeral=True)
            return
        await interaction.response.defer(thinking=True, ephemeral=True)
        manifest = await self.store.read_manifest(recording)
        text, file = await self.announcer.summary_and_zip(manifest, interaction.filesize_limit)
        await self.announcer.send_with_optional_file(interaction.followup.send, text, file, ephemeral=True)

    @app_commands.command(name="delete", description="Delete a recording and its files")
    @app_commands.describe(recording_id="The recording's id, as /recordings list shows it")
    async def delete(self, interaction: discord.Interaction, recording_id: str) -> None:
        """Remove the files and the index entry; the download link stops working."""
        recording = await self._finished_recording(interaction, recording_id)
        if recording is None:
            return
        await self.store.delete(recording.id)
        await interaction.response.send_message(f"Deleted recording `{recording.id}` and its files.", ephemeral=True)


def _short(exc: BaseException) -> str:
    """A one-line reason for users; timeouts have no message of their own."""
    if isinstance(exc, TimeoutError):
        return "the voice connection timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # not str(exc): that names the bot's file paths
    if isinstance(exc, IndexUnavailable):  # not str(exc): that names the database's host and user
        return "the bot's database cannot be reached right now; try again in a minute"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
