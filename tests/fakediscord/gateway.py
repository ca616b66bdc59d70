"""The main gateway: a plain ``ws://`` websocket discord.py connects to unmodified.

Speaks Discord's gateway v10 with JSON text frames (discord.py asks for
zlib-stream but only inflates binary frames, so text is understood as is).
Sessions outlive their websocket: events dispatched while a client is away are
kept and replayed on RESUME.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from .identify_limit import IdentifyLimit
from .state import Guild, User, VoiceState, World

_log = logging.getLogger(__name__)

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_VOICE_STATES = 1 << 7
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

CLOSE_UNKNOWN_ERROR = 4000
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_INVALID_SHARD = 4010
CLOSE_DISALLOWED_INTENTS = 4014

HEARTBEAT_INTERVAL_MS = 41_250
#: Events kept per session for RESUME.
_REPLAY_LIMIT = 1000


class VoiceBackend(Protocol):
    """What the gateway needs from the voice server (tests/fakediscord/voice.py)."""

    endpoint: str

    def authorize(self, *, guild_id: int, channel_id: int, user_id: int, session_id: str, token: str) -> None: ...

    def disconnect(self, guild_id: int, user_id: int) -> None: ...


def guild_create_payload(world: World, guild: Guild) -> dict[str, Any]:
    """GUILD_CREATE data: the guild with channels, roles, every member and voice states.

    `member_count` equals the members sent, so discord.py never asks to chunk.
    """
    data = guild.payload()
    data.update(
        unavailable=False, large=False, member_count=len(guild.members),
        joined_at="2026-01-01T00:00:00+00:00",
        channels=[c.payload() for c in guild.channels.values()],
        members=[m.payload() for m in guild.members.values()],
        voice_states=[vs.payload(None) for (gid, _), vs in world.voice_states.items() if gid == guild.id],
        presences=[], threads=[], stage_instances=[], guild_scheduled_events=[], soundboard_sounds=[],
    )
    return data


class Session:
    """One identified gateway session (one shard of one client)."""

    __slots__ = ("id", "user", "shard_id", "shard_count", "intents", "seq", "sent", "conn")

    def __init__(self, user: User, shard_id: int, shard_count: int, intents: int) -> None:
        self.id = secrets.token_hex(16)
        self.user = user
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.intents = intents
        self.seq = 0
        #: (seq, frame) of recent dispatches, for RESUME.
        self.sent: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=_REPLAY_LIMIT)
        self.conn: Connection | None = None

    def has_guild(self, guild_id: int) -> bool:
        """Whether this shard receives `guild_id`'s events (Discord's sharding formula)."""
        return (guild_id >> 22) % self.shard_count == self.shard_id

    def dispatch(self, event: str, data: Any) -> None:
        """Number, keep and (if connected) send one event."""
        self.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
        self.sent.append((self.seq, frame))
        if self.conn is not None:
            self.conn.send(frame)


class Connection:
    """One websocket; frames go out in order through a writer task."""

    __slots__ = ("ws", "session", "_queue", "_writer")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session: Session | None = None
        self._queue: asyncio.Queue[dict[str, Any] | tuple[int, str]] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame."""
        self._queue.put_nowait(frame)

    def close(self, code: int, message: str) -> None:
        """Close after the frames already queued."""
        self._queue.put_nowait((code, message))

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple):
                await self.ws.close(code=item[0], message=item[1].encode())
                return
            try:
                await self.ws.send_str(json.dumps(item))
            except ConnectionError:
                return

    async def finish(self) -> None:
        """Stop the writer (the socket is gone)."""
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass


class Gateway:
    """All gateway sessions of the fake, fed by World events."""

    def __init__(self, world: World, *, token: str, bot_user: User, application_id: int,
                 allowed_intents: int = -1) -> None:
        self.world = world
        self._token = token
        self.bot_user = bot_user
        self.application_id = application_id
        #: Intent bits a client may ask for; privileged ones outside it close with 4014.
        self.allowed_intents = allowed_intents
        #: ws:// URL of this gateway, set by the server once it knows its port.
        self.url = ""
        self.voice: VoiceBackend | None = None
        self.sessions: dict[str, Session] = {}
        self._connections: set[Connection] = set()
        #: While set, new gateway connections are refused with HTTP 503 (Discord's gateway down).
        self.refusing = False
        #: Discord's IDENTIFY rate limit, and the log of every IDENTIFY.
        self.identify_limit = IdentifyLimit()
        #: Which gateway session holds each (guild, user) voice state: a new session
        #: (a restarted bot) joining the same channel takes it over as Discord does.
        self._voice_holders: dict[tuple[int, int], Session] = {}
        world.subscribe(self._on_world_event)

    # -- world events -------------------------------------------------------

    def _on_world_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "voice_state":
            state: VoiceState = data["state"]
            guild = self.world.guilds[state.guild_id]
            payload = state.payload(guild.members.get(state.user_id))
            self.dispatch_guild(state.guild_id, "VOICE_STATE_UPDATE", payload, INTENT_GUILD_VOICE_STATES)
        elif event == "member_update":
            guild_id = data["guild_id"]
            member = data["member"]
            payload = {"guild_id": str(guild_id), **member.payload()}
            # Assumed as on Discord: a client always hears about its own member.
            for session in self.sessions.values():
                if session.has_guild(guild_id) and (
                        session.intents & INTENT_GUILD_MEMBERS or session.user.id == member.user.id):
                    session.dispatch("GUILD_MEMBER_UPDATE", payload)

    def dispatch_guild(self, guild_id: int, event: str, data: Any, intent: int = 0) -> int:
        """Send an event to every session that receives `guild_id` (and has `intent`).

        Returns how many sessions got it.
        """
        count = 0
        for session in self.sessions.values():
            if session.has_guild(guild_id) and (not intent or session.intents & intent):
                session.dispatch(event, data)
                count += 1
        return count

    # -- test controls --------------------------------------------------------

    def force_close(self, code: int = CLOSE_UNKNOWN_ERROR) -> int:
        """Close every client's websocket with `code` (4000: the client should resume).

        Returns how many connections were closed.
        """
        closing = [c for c in self._connections if not c.ws.closed]
        for conn in closing:
            conn.close(code, "closed by test")
        _log.info("force-closing %d gateway connections with %d", len(closing), code)
        return len(closing)

    def kick_from_voice(self, user_id: int) -> int:
        """Disconnect `user_id` from voice in every guild, as a moderator would.

        Returns how many voice states were removed.
        """
        keys = [key for key in self.world.voice_states if key[1] == user_id]
        for guild_id, _ in keys:
            self.world.set_voice_state(guild_id, user_id, None)
            if self.voice is not None:
                self.voice.disconnect(guild_id, user_id)
        return len(keys)

    async def close(self) -> None:
        """Close all connections (server shutdown)."""
        for conn in list(self._connections):
            await conn.ws.close(code=1001, message=b"shutting down")
            await conn.finish()

    # -- websocket ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for GET /gateway."""
        if self.refusing:
            _log.info("gateway connection refused (the gateway is down for the test)")
            return web.Response(status=503, text="gateway down")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = Connection(ws)
        self._connections.add(conn)
        conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    conn.close(CLOSE_DECODE_ERROR, "Error while decoding payload.")
                    continue
                try:
                    frame = json.loads(msg.data)
                    op, payload = frame["op"], frame.get("d")
                except (ValueError, KeyError, TypeError):
                    conn.close(CLOSE_DECODE_ERROR, "Error while decoding payload.")
                    continue
                self._on_frame(conn, op, payload)
        finally:
            self._connections.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            await conn.finish()
            _log.debug("gateway connection closed (code %s)", ws.close_code)
        return ws

    def _on_frame(self, conn: Connection, op: int, d: Any) -> None:
        if op == OP_HEARTBEAT:
            conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            self._identify(conn, d)
        elif op == OP_RESUME:
            self._resume(conn, d)
        elif conn.session is None:
            conn.close(CLOSE_NOT_AUTHENTICATED, "Not authenticated.")
        elif op == OP_VOICE_STATE_UPDATE:
            self._voice_state_update(conn.session, d)
        elif op == OP_REQUEST_GUILD_MEMBERS:
            self._request_members(conn.session, d)
        else:
            _log.warning("gateway op %s not handled by the fake", op)

    def _identify(self, conn: Connection, d: dict[str, Any]) -> None:
        if d.get("token") != self._token:
            _log.warning("IDENTIFY with a wrong token: closing 4004")
            conn.close(CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.allowed_intents:
            conn.close(CLOSE_DISALLOWED_INTENTS, "Disallowed intent(s).")
            return
        shard_id, shard_count = d.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            conn.close(CLOSE_INVALID_SHARD, "Invalid shard.")
            return
        if not self.identify_limit.admit(shard_id, shard_count):
            _log.warning("IDENTIFY shard %d/%d breaks the rate limit (bucket %d of %d): invalid session", shard_id,
                         shard_count, shard_id % self.identify_limit.max_concurrency,
                         self.identify_limit.max_concurrency)
            conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        session = Session(self.bot_user, shard_id, shard_count, intents)
        self.sessions[session.id] = session
        conn.session = session
        session.conn = conn
        guilds = [g for g in self.world.guilds.values()
                  if self.bot_user.id in g.members and session.has_guild(g.id)]
        user = {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0}
        ready: dict[str, Any] = {
            "v": 10, "user": user, "session_id": session.id, "session_type": "normal",
            "resume_gateway_url": self.url, "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "user_settings": {},
            "guild_join_requests": [], "geo_ordered_rtc_regions": ["loopback"], "_trace": ["fakediscord"],
        }
        if d.get("shard"):
            ready["shard"] = [shard_id, shard_count]
        _log.info("IDENTIFY shard %d/%d intents %d: %d guilds", shard_id, shard_count, intents, len(guilds))
        session.dispatch("READY", ready)
        for guild in guilds:
            session.dispatch("GUILD_CREATE", guild_create_payload(self.world, guild))

    def _resume(self, conn: Connection, d: dict[str, Any]) -> None:
        session = self.sessions.get(d.get("session_id", ""))
        seq = d.get("seq") or 0
        if d.get("token") != self._token or session is None or (session.sent and seq < session.sent[0][0] - 1):
            _log.info("RESUME refused: invalid session")
            conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.conn is not None and session.conn is not conn:
            session.conn.close(CLOSE_UNKNOWN_ERROR, "Session resumed elsewhere.")
        conn.session = session
        session.conn = conn
        replay = [frame for s, frame in session.sent if s > seq]
        for frame in replay:
            conn.send(frame)
        _log.info("RESUME session %s from seq %d: replaying %d events", session.id[:8], seq, len(replay))
        session.dispatch("RESUMED", {"_trace": ["fakediscord"]})

    def _voice_state_update(self, session: Session, d: dict[str, Any]) -> None:
        _log.info("op 4 from session %s: %s", session.id[:8], {k: d.get(k) for k in ("guild_id", "channel_id")})
        guild_id = int(d["guild_id"])
        channel_id = int(d["channel_id"]) if d.get("channel_id") else None
        user_id = session.user.id
        guild = self.world.guilds.get(guild_id)
        if guild is None or user_id not in guild.members:
            _log.warning("op 4 for guild %s the bot is not in", guild_id)
            return
        if channel_id is not None and channel_id not in guild.channels:
            _log.warning("op 4 for unknown channel %s", channel_id)
            return
        before = self.world.voice_states.get((guild_id, user_id))
        before_channel = before.channel_id if before else None
        holder = self._voice_holders.get((guild_id, user_id))
        taken_over = before_channel is not None and holder is not None and holder is not session
        state = self.world.set_voice_state(guild_id, user_id, channel_id, new_session=taken_over,
                                           self_mute=bool(d.get("self_mute")), self_deaf=bool(d.get("self_deaf")))
        if channel_id is None:
            self._voice_holders.pop((guild_id, user_id), None)
            if self.voice is not None and before_channel is not None:
                self.voice.disconnect(guild_id, user_id)
            return
        self._voice_holders[(guild_id, user_id)] = session
        if channel_id == before_channel and not taken_over:
            return  # a mute/deafen change: Discord keeps the voice connection
        if self.voice is None:
            _log.error("op 4 joined voice but this fake runs without a voice server (no VOICE_SERVER_UPDATE)")
            return
        if before_channel is not None:
            self.voice.disconnect(guild_id, user_id)
        token = secrets.token_hex(16)
        self.voice.authorize(guild_id=guild_id, channel_id=channel_id, user_id=user_id,
                             session_id=state.session_id, token=token)
        session.dispatch("VOICE_SERVER_UPDATE",
                         {"token": token, "guild_id": str(guild_id), "endpoint": self.voice.endpoint})
        _log.info("op 4: user %s joined channel %s of guild %s (from %s): voice state and server sent",
                  user_id, channel_id, guild_id, before_channel)

    def _request_members(self, session: Session, d: dict[str, Any]) -> None:
        guild_ids = d.get("guild_id")
        for raw in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self.world.guilds.get(int(raw))
            if guild is None:
                continue
            query = (d.get("query") or "").lower()
            wanted = {int(u) for u in d.get("user_ids") or []}
            members = [m.payload() for m in guild.members.values()
                       if (not wanted or m.user.id in wanted) and m.user.username.lower().startswith(query)]
            limit = d.get("limit") or 0
            if limit:
                members = members[:limit]
            chunk: dict[str, Any] = {"guild_id": str(guild.id), "members": members,
                                     "chunk_index": 0, "chunk_count": 1, "not_found": []}
            if d.get("nonce"):
                chunk["nonce"] = d["nonce"]
            session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
