"""FakeDiscord: the whole loopback Discord on its own event loop thread.

    with FakeDiscord() as fake:
        cfg = fake.config           # api_base, gateway_url, ca_file, token, ids
        ...                         # run a discord.py client against cfg
        record = fake.invoke_command("ping")
        print(record.wait_message().content)

Tests and the bot run in their own loop or process and talk to the fake over
real sockets; the sync methods here hop onto the fake's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web

from .gateway import Gateway
from .identify_limit import IdentifyAttempt
from .interactions import CommandRegistry, build_command_data, build_interaction
from .messages import InteractionRecord, Message, MessageStore, wait_until
from .rest import RestApi
from .state import CHANNEL_TEXT, CHANNEL_VOICE, PERM_ADMINISTRATOR, Guild, User, World, snowflake
from .tlsca import TestCA

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: aiohttp refuses bodies over 1 MiB by default; recordings are bigger.
MAX_BODY_BYTES = 100 * 1024 * 1024
#: Names of the three simulated speakers.
SPEAKER_NAMES = ("alice", "bob", "carol")


@dataclass
class DefaultWorld:
    """The people and places of the default scenario."""

    bot: User
    guild: Guild
    text_channel_id: int
    voice_channel_id: int
    recorder_role_id: int
    admin_role_id: int
    members: dict[str, int]


def build_default_world(world: World) -> DefaultWorld:
    """One guild ("Loopback Guild") with a text and a voice channel, an owner, an
    admin, a member holding the "Recorder" role, one with no extra rights, three
    speakers, and the bot."""
    bot = world.add_user("Loopback Recorder", bot=True)
    owner = world.add_user("owner")
    guild = world.add_guild("Loopback Guild", owner)
    text = world.add_channel(guild, "general", CHANNEL_TEXT)
    voice = world.add_channel(guild, "Voice", CHANNEL_VOICE)
    admin_role = world.add_role(guild, "Admin", PERM_ADMINISTRATOR)
    recorder_role = world.add_role(guild, "Recorder")
    world.add_member(guild, bot)
    members = {"owner": owner.id}
    for name, roles in (("admin", [admin_role.id]), ("recorder", [recorder_role.id]), ("nobody", [])):
        members[name] = world.add_member(guild, world.add_user(name), roles).user.id
    for name in SPEAKER_NAMES:
        members[name] = world.add_member(guild, world.add_user(name)).user.id
    return DefaultWorld(bot, guild, text.id, voice.id, recorder_role.id, admin_role.id, members)


class FakeDiscord:
    """The loopback Discord: REST + gateway on one aiohttp server, the TLS voice
    server, and the default world, served from a background thread.

    `voice=False` runs without the voice server (joins get no VOICE_SERVER_UPDATE);
    `dave` is passed to the voice server; `port` 0 picks a free port;
    `max_concurrency` is Discord's IDENTIFY concurrency (see :mod:`.identify_limit`),
    high by default so that tests not about it never wait for it.
    """

    def __init__(self, *, dave: bool = True, voice: bool = True, port: int = 0, max_concurrency: int = 16) -> None:
        self._dave = dave
        self._want_voice = voice
        self._port = port
        self.changes = threading.Condition()
        """Notified on every message, reply and World change (for waiting)."""
        self.world = World()
        self.default = build_default_world(self.world)
        self.token = f"{secrets.token_urlsafe(18)}.{secrets.token_urlsafe(6)}.{secrets.token_urlsafe(27)}"
        self.application_id = self.default.bot.id
        self.store = MessageStore(self.changes)
        self.commands = CommandRegistry()
        owner = self.world.users[self.default.members["owner"]]
        self.rest = RestApi(self.world, self.store, self.commands, token=self.token,
                            bot_user=self.default.bot, application_id=self.application_id, owner=owner)
        self.gateway = Gateway(self.world, token=self.token, bot_user=self.default.bot,
                               application_id=self.application_id)
        self.gateway.identify_limit.max_concurrency = max_concurrency
        self.rest.identify_limit = self.gateway.identify_limit
        self.world.subscribe(self._notify)
        self.voice: Any = None
        self.ca: TestCA | None = None
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        #: HTTP requests (REST calls and gateway upgrades) any client made so far.
        self.requests_seen = 0

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> "FakeDiscord":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> "FakeDiscord":
        """Start the loop thread and every server; return self."""
        self.ca = TestCA()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fakediscord", daemon=True)
        self._thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self.close()
            raise
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._count_request])
        self.rest.install(app)
        app.router.add_get("/gateway", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.rest.base_url = self.base_url
        self.rest.gateway_url = self.gateway.url = f"ws://127.0.0.1:{port}/gateway"
        if self._want_voice:
            self.voice = _make_voice_server(self.world, self.ca, self._dave)  # type: ignore[arg-type]
            await self.voice.start()
            self.gateway.voice = self.voice
        _log.info("fake Discord at %s (voice %s)", self.base_url, self.voice.endpoint if self.voice else "off")

    def close(self) -> None:
        """Stop every server and the loop thread; delete the test CA."""
        loop, self._loop = self._loop, None
        if loop is not None:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=10)
                loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            loop.close()
        if self.ca is not None:
            self.ca.close()
            self.ca = None

    async def _stop(self) -> None:
        await self.gateway.close()
        if self.voice is not None:
            await self.voice.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what clients need ----------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """Everything a client needs: URLs, CA file, token and the default ids."""
        d = self.default
        return {
            "api_base": self.base_url + "/api/v10", "gateway_url": self.gateway.url,
            "ca_file": self.ca.ca_file if self.ca else None, "token": self.token,
            "application_id": self.application_id, "bot_user_id": d.bot.id,
            "guild_id": d.guild.id, "voice_channel_id": d.voice_channel_id,
            "text_channel_id": d.text_channel_id, "recorder_role_id": d.recorder_role_id,
            "members": dict(d.members),
        }

    def url(self, path: str) -> str:
        """An absolute http URL on the fake for `path` (absolute URLs pass through)."""
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    # -- running things on the fake's loop ----------------------------------------

    def run(self, what: Awaitable[T] | Callable[[], T], timeout: float = 30.0) -> T:
        """Run a coroutine, or call a function, on the fake's loop; return its result."""
        if self._loop is None:
            raise RuntimeError("the fake Discord is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("FakeDiscord.run called from the fake's own loop")
        if inspect.isawaitable(what):
            coro = what
        else:
            async def call() -> T:
                return what()  # type: ignore[operator,return-value]
            coro = call()
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def _notify(self, event: str, data: dict[str, Any]) -> None:
        with self.changes:
            self.changes.notify_all()

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "a condition") -> T:
        """Block until `predicate()` is truthy and return its value.

        The predicate runs on the caller's thread under `changes`, re-evaluated on
        every change and at least every 50 ms (for state the fake does not announce).
        """
        return wait_until(self.changes, lambda: predicate() or None, timeout, what, poll=0.05)

    # -- test controls ----------------------------------------------------------

    def invoke_command(self, name: str, subcommand: str | None = None, options: dict[str, Any] | None = None,
                       *, user_id: int | None = None, channel_id: int | None = None,
                       guild_id: int | None = None) -> InteractionRecord:
        """Deliver `/name [subcommand] options...` to the bot as `user_id` (default: the
        owner) in `channel_id` (default: the text channel); return its record."""
        return self.run(lambda: self._invoke(name, subcommand, dict(options or {}),
                                             user_id or self.default.members["owner"],
                                             channel_id or self.default.text_channel_id,
                                             guild_id or self.default.guild.id))

    def _invoke(self, name: str, subcommand: str | None, options: dict[str, Any],
                user_id: int, channel_id: int, guild_id: int) -> InteractionRecord:
        guild = self.world.guilds[guild_id]
        command = self.commands.find(self.application_id, guild_id, name)
        if command is None:
            raise LookupError(f"/{name} is not registered (globally or for guild {guild_id})")
        data = build_command_data(self.world, guild, command, subcommand, options,
                                  guild.member_permissions(user_id))
        interaction_id, token = snowflake(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload = build_interaction(self.world, guild, application_id=self.application_id,
                                    bot_user_id=self.default.bot.id, channel_id=channel_id, user_id=user_id,
                                    data=data, interaction_id=interaction_id, token=token)
        label = f"{name} {subcommand}" if subcommand else name
        record = InteractionRecord(self.changes, id=interaction_id, token=token, name=label,
                                   guild_id=guild_id, channel_id=channel_id, user_id=user_id)
        self.rest.interactions[token] = record
        if not self.gateway.dispatch_guild(guild_id, "INTERACTION_CREATE", payload):
            raise RuntimeError("no gateway client receives this guild: is the bot connected?")
        _log.info("invoked /%s as user %d", label, user_id)
        return record

    def gateway_connected(self, guild_id: int | None = None) -> bool:
        """Whether some client's gateway session receives `guild_id` (default guild),
        i.e. whether a command invoked now would reach a bot."""
        gid = guild_id or self.default.guild.id
        return self.run(lambda: any(s.has_guild(gid) for s in self.gateway.sessions.values()))

    def messages(self, channel_id: int | None = None) -> list[Message]:
        """Messages posted in `channel_id` (default: the text channel), oldest first."""
        return self.store.in_channel(channel_id or self.default.text_channel_id)

    def registered_commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Commands the bot registered globally (None) or for `guild_id`."""
        return self.run(lambda: self.commands.list(self.application_id, guild_id))

    def set_upload_limit(self, limit: int, guild_id: int | None = None) -> None:
        """Change a guild's upload limit in bytes (default guild when None)."""
        def apply() -> None:
            self.world.guilds[guild_id or self.default.guild.id].upload_limit = limit
        self.run(apply)

    def set_voice_state(self, user_id: int, channel_id: int | None, guild_id: int | None = None) -> None:
        """Move a (simulated) user into or out of a voice channel."""
        self.run(lambda: self.world.set_voice_state(guild_id or self.default.guild.id, user_id, channel_id))

    def kick_from_voice(self, user_id: int) -> int:
        """Disconnect `user_id` from voice everywhere; returns voice states removed."""
        return self.run(lambda: self.gateway.kick_from_voice(user_id))

    def start_scenario(self, scenario: Any = None, channel_id: int | None = None) -> Any:
        """Play a voice scenario (default: scenario.DEFAULT_SCENARIO) in `channel_id`
        (default: the default voice channel; a stage works too); returns the started
        `ScenarioRunner` (stop it with `fake.run(runner.stop())`). Needs the voice server."""
        if self.voice is None:
            raise RuntimeError("voice scenarios need FakeDiscord(voice=True)")
        from .scenario import DEFAULT_SCENARIO, ScenarioRunner
        runner = ScenarioRunner(self.world, self.voice, self.default.guild.id,
                                channel_id or self.default.voice_channel_id,
                                scenario if scenario is not None else DEFAULT_SCENARIO)
        self.run(runner.start())
        return runner

    def force_close_gateway(self, code: int = 4000) -> int:
        """Close every client's gateway websocket (4000: resumable); returns how many."""
        return self.run(lambda: self.gateway.force_close(code))

    @web.middleware
    async def _count_request(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests_seen += 1
        return await handler(request)

    def set_max_concurrency(self, max_concurrency: int) -> None:
        """Change Discord's IDENTIFY concurrency (what /gateway/bot reports, and the gateway keeps)."""
        def apply() -> None:
            self.gateway.identify_limit.max_concurrency = max_concurrency
        self.run(apply)

    def identify_log(self) -> list[IdentifyAttempt]:
        """Every IDENTIFY the gateway received so far, in order, refused ones included."""
        return self.run(lambda: list(self.gateway.identify_limit.log))

    def gateway_down(self, down: bool = True) -> None:
        """While `down`, refuse new gateway connections (HTTP 503); open ones stay up
        (close them with :meth:`force_close_gateway`)."""
        def apply() -> None:
            self.gateway.refusing = down
        self.run(apply)

    def command_syncs(self) -> list[tuple[int | None, list[str]]]:
        """Every bulk overwrite of commands so far: (guild id, or None for global; names)."""
        return self.run(lambda: list(self.commands.overwrites))

    # -- voice faults ---------------------------------------------------------

    def force_close_voice(self, user_id: int, code: int = 4006) -> int:
        """Close `user_id`'s voice websocket with `code` (1006: abort the TCP connection,
        a network drop); returns how many were closed."""
        return self.run(self.voice.force_close(user_id, code))

    def silence_udp(self, seconds: float) -> None:
        """No UDP media reaches any client for `seconds` (websockets stay up)."""
        self.run(lambda: self.voice.silence(seconds))

    def move_voice_server(self, guild_id: int | None = None) -> str:
        """Move `guild_id`'s voice (default guild) to a new voice server endpoint: every
        real client in voice there gets VOICE_SERVER_UPDATE with a new token and the new
        endpoint (its own websocket port and UDP socket). Returns the endpoint."""
        return self.run(self._move_voice_server(guild_id or self.default.guild.id))

    async def _move_voice_server(self, guild_id: int) -> str:
        endpoint = await self.voice.add_endpoint()
        for session in self.gateway.sessions.values():
            state = self.world.voice_states.get((guild_id, session.user.id))
            if state is None or state.channel_id is None or not session.has_guild(guild_id):
                continue
            token = secrets.token_hex(16)
            self.voice.authorize(guild_id=guild_id, channel_id=state.channel_id, user_id=session.user.id,
                                 session_id=state.session_id, token=token)
            session.dispatch("VOICE_SERVER_UPDATE", {"token": token, "guild_id": str(guild_id), "endpoint": endpoint})
            _log.info("voice server of guild %d moved to %s for user %d", guild_id, endpoint, session.user.id)
        return endpoint


def _make_voice_server(world: World, ca: TestCA, dave: bool) -> Any:
    """Import the voice half only when wanted, so the HTTP half works without it."""
    try:
        from .voice import VoiceServer
    except ImportError as exc:
        raise RuntimeError(f"the fake's voice server is unavailable ({exc}); use FakeDiscord(voice=False)") from exc
    return VoiceServer(world, ca.server_context(), dave=dave)
