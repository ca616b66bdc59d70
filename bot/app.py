"""The bot client: wires storage, the recording registry, announcements, the
download server and the slash commands together, and runs start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import discord
from prometheus_client import CollectorRegistry, ProcessCollector

from bot.announce import Announcer
from bot.autorecord import Autorecorder
from bot.commands import RecordGroup, RecordingsGroup
from bot.config import Settings
from bot.gateway_plan import fetch_gateway_plan
from bot.guild_config import GuildConfig
from bot.health import bot_problems
from bot.identify_pacing import IdentifyPacer
from bot.invite import PERMISSION_REASONS, invite_url
from bot.metrics import RecordingCollector
from bot.nickname import clear_stale_mark
from bot.offload import Offloader
from bot.recovery import Interrupted, examine
from bot.registry import RecordingRegistry
from bot.resume import report_channel, resume_or_close
from bot.session import SessionLimits, StopReason
from bot.settings_command import SettingsGroup
from bot.shard_claim import ShardClaim
from bot.storage import AsyncRecordingStore, Recording
from bot.stores import Stores
from bot.sweeps import sweep_periodically
from bot.tree import TrackedCommandTree
from bot.upload_metrics import UploadCollector
from bot.web import WebServer, create_app
from bot.web.encoder import Encoder
from bot.web.ops import add_ops_routes
from bot.web.storecheck import ObjectStoreCheck
from sinks import WorkerPool

__all__ = ["RecorderBot"]

_log = logging.getLogger(__name__)

#: How long shutdown lets running commands (a /record stop sending its files) finish.
_COMMAND_DRAIN_SECONDS = 20.0
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

    def __init__(self, settings: Settings, stores: Stores, *, stop: Callable[[], None],
                 connector: aiohttp.BaseConnector | None = None) -> None:
        """``stores`` are the index and the object store to use (their opener closes them,
        after the client); ``stop`` ends the process for good (as SIGINT does): called when
        another process took this one's shards (see :mod:`bot.shard_claim`)."""
        intents = discord.Intents.none()
        intents.guilds = True
        intents.voice_states = True
        super().__init__(
            intents=intents,
            # Nothing the bot posts pings anyone: names in it are members' own text.
            allowed_mentions=discord.AllowedMentions.none(),
            connector=connector,
            shard_count=settings.shard_count,
            shard_ids=list(settings.shard_ids) if settings.shard_ids is not None else None,
            guild_ready_timeout=settings.guild_ready_seconds,
        )
        self.settings = settings
        #: The object store finished recordings go to; None: they stay in the folder.
        self.objects = stores.objects
        #: The recording index (its opener closes it, after the client).
        self.store = stores.index
        self.offloader = (Offloader(self.store, self.objects, keep_local=settings.keep_local_copy)
                          if self.objects else None)
        self.astore = AsyncRecordingStore(self.store)
        #: This process's hold on its shards and its recordings folder.
        self.shard_claim = ShardClaim(self.store.shard_leases, settings.recordings_dir, self.store.owner,
                                      shard_ids_set=settings.shard_ids is not None,
                                      shard_count_set=settings.shard_count is not None,
                                      lease_seconds=settings.shard_lease_seconds)
        #: Each IDENTIFY waits for its turn among every process sharing the index.
        self.identify_pacer = IdentifyPacer(self.store.identify_slots)
        #: Why the process must exit 1 (its shards were taken over); None: it may exit 0.
        self.fatal_error: str | None = None
        self._stop = stop
        self.tree = TrackedCommandTree(self)
        #: Encodes for downloads and stop summaries, on a low-priority thread of their own (see bot.web.encoder).
        self.encoder = Encoder()
        #: This process's Prometheus figures (its own registry: two bots in one test process stay apart).
        self.metrics = CollectorRegistry()
        ProcessCollector(registry=self.metrics)
        app = create_app(self.astore, encoder=self.encoder, metrics=self.metrics, objects=self.objects)
        objects_check = ObjectStoreCheck(self.objects) if self.objects is not None else None
        add_ops_routes(app, readiness=lambda: bot_problems(self, self.astore, objects_check), metrics=self.metrics)
        if self.offloader is not None:
            self.metrics.register(UploadCollector(self.offloader))
        self.web = WebServer(app, settings.http_host, settings.http_port, max_connections=settings.http_max_connections)
        #: The recording worker threads, one pool for every guild's recording (see sinks.worker).
        self.recording_workers = WorkerPool(_RECORDING_WORKERS, name="recordings")
        #: Each server's own settings, within the operator's.
        self.guild_config = GuildConfig(self.astore, settings)
        self.announcer = Announcer(self.astore, settings.public_url, self.encoder, self.guild_config)
        self._limits = limits = SessionLimits(
            max_seconds=settings.max_recording_seconds,
            min_free_disk_mb=settings.min_free_disk_mb,
            empty_channel_seconds=settings.empty_channel_minutes * 60.0,
        )
        self.recordings = RecordingRegistry(self.astore, limits, self.recording_workers, self.announcer)
        recording_figures = RecordingCollector(self.recordings)
        self.recordings.add_end_listener(recording_figures.ended)
        self.metrics.register(recording_figures)
        self.autorecorder = Autorecorder(settings, self.guild_config, self.recordings, self.announcer)
        #: Whether closing pauses recordings for a restart (SIGTERM) or finishes them all (SIGINT).
        self.pause_on_close = True
        self._recovered: list[Recording] = []
        self._interrupted: list[Interrupted] = []
        self._retention: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        """Claim this process's shards, repair what a crash or a restart left, start the
        download server, register commands."""
        await self._claim_shards()
        self._recovered, self._interrupted = await asyncio.to_thread(examine, self.store)
        await self.astore.expire()
        if self.offloader is not None:
            self.offloader.start()
        await self.web.start()
        self.add_commands()
        if self.settings.sync_commands:
            await self.tree.sync()
        else:
            _log.info("slash commands not synced at start (SYNC_COMMANDS=no); `voice-recorder-bot sync-commands` "
                      "does it")
        self._retention = asyncio.create_task(sweep_periodically(self.astore.expire, "retention sweep"),
                                              name="retention")
        assert self.application_id is not None
        reasons = "; ".join(f"{name.replace('_', ' ')}: to {why}" for name, why in PERMISSION_REASONS.items())
        _log.info("invite the bot with %s", invite_url(self.application_id))
        _log.info("permissions asked for and why: %s", reasons)
        _log.info("download links start with %s", self.settings.public_url)

    async def _claim_shards(self) -> None:
        """Before any IDENTIFY (and before recovery touches the folder): learn the shard
        count and IDENTIFY concurrency, then hold the shards (raises ShardClaimRefused)."""
        plan = await fetch_gateway_plan(self, self.settings.shard_count)
        if self.shard_count is None:
            self.shard_count = plan.shard_count  # what discord.py would have asked Discord for again
        shards = self.settings.shard_ids if self.settings.shard_ids is not None else range(plan.shard_count)
        await self.shard_claim.acquire(list(shards), plan.shard_count)
        self.shard_claim.keep_renewed(self._shards_lost)
        self.identify_pacer.max_concurrency = plan.max_concurrency

    def _shards_lost(self, line: str) -> None:
        self.fatal_error = line
        self._stop()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py's hook before each IDENTIFY: wait for this shard's turn (see
        :mod:`bot.identify_pacing`) instead of discord.py's 5 s per process."""
        await self.identify_pacer.wait_turn(shard_id, initial=initial)

    def add_commands(self) -> None:
        """Put the slash commands in :attr:`tree` (what a sync registers with Discord)."""
        self.tree.add_command(RecordGroup(self.settings, self.recordings, self.announcer, self.guild_config))
        self.tree.add_command(RecordingsGroup(self.settings, self.recordings, self.announcer, self.guild_config,
                                              self.astore))
        self.tree.add_command(SettingsGroup(self.settings, self.guild_config))

    async def on_ready(self) -> None:
        """Take off REC marks a dead process left, tell guilds about the recordings
        the start-up closed (once), and resume or close those the last process
        left running (see :mod:`bot.resume`)."""
        _log.info("connected as %s to %d guild(s)", self.user, len(self.guilds))
        for guild in self.guilds:
            if self.recordings.session(guild.id) is None:
                await clear_stale_mark(guild)
        recovered, self._recovered = self._recovered, []
        for recording in recovered:
            channel = report_channel(self, recording)
            if channel is not None:
                await self.announcer.recovered(channel, recording)
        interrupted, self._interrupted = self._interrupted, []
        await resume_or_close(self, self.recordings, self.astore, self.announcer, self._limits, interrupted)

    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        """Someone joined, left or moved in voice: autorecord may start a recording."""
        try:
            await self.autorecorder.on_voice_state_update(member, before, after)
        except Exception:  # one failed start must not silence the next events
            _log.exception("autorecord failed on a voice state update in guild %s", member.guild.id)

    async def on_app_command_completion(self, interaction: discord.Interaction, _command: object) -> None:
        """discord.py's event after a command callback returned."""
        self.tree.finished(interaction)

    async def close(self) -> None:
        """Let running commands answer; when :attr:`pause_on_close`, suspend every recording
        with people in its channel for the next start to resume; finalize the others; then
        disconnect (SIGTERM and SIGINT land here)."""
        await self.tree.wait_idle(_COMMAND_DRAIN_SECONDS)
        self.autorecorder.close()
        await self.recordings.stop_all(StopReason("the bot is shutting down", automatic=True),
                                       pause=self.pause_on_close)
        await asyncio.to_thread(self.recording_workers.close)
        self.recordings.close()
        if self._retention is not None:
            self._retention.cancel()
        if self.offloader is not None:
            await self.offloader.close()
        await self.web.stop()
        self.encoder.shutdown()
        await super().close()
        await self.shard_claim.release()
