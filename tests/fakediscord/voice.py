"""The fake voice server: the TLS voice websocket (gateway v8) and its UDP media socket.

The main gateway calls `authorize()` when a client's op 4 puts it in a voice
channel and then sends VOICE_SERVER_UPDATE with `endpoint`; discord.py
connects to `wss://endpoint/?v=8` and runs: HELLO, IDENTIFY, READY, IP
discovery over UDP, SELECT_PROTOCOL, SESSION_DESCRIPTION, then DAVE. Simulated
speakers (speakers.py) enter rooms through World "voice_state" events.

For fault tests the server can open further endpoints (`add_endpoint`: one
more TLS websocket port and UDP socket sharing the rooms, as when Discord
moves a guild to another voice server), close or abort a client's websocket
(`force_close`) and go quiet on UDP (`silence`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSMsgType, web

from .media import Address, MediaServer
from .room import VoiceRoom
from .rtp import MODE_AES_GCM, MODE_XCHACHA, RtpPacket, TransportCipher
from .state import World

__all__ = ["VoiceServer", "ClientConnection", "CLOSE_DAVE_REQUIRED"]

_log = logging.getLogger(__name__)

OP_IDENTIFY = 0
OP_SELECT_PROTOCOL = 1
OP_READY = 2
OP_HEARTBEAT = 3
OP_SESSION_DESCRIPTION = 4
OP_SPEAKING = 5
OP_HEARTBEAT_ACK = 6
OP_RESUME = 7
OP_HELLO = 8
OP_RESUMED = 9
_DAVE_CLIENT_OPS: Final = frozenset({23, 26, 28, 31})

CLOSE_UNKNOWN_OPCODE: Final = 4001
CLOSE_NOT_AUTHENTICATED: Final = 4003
CLOSE_AUTHENTICATION_FAILED: Final = 4004
CLOSE_SESSION_INVALID: Final = 4006
#: Not a close frame: `force_close` with this code aborts the TCP connection,
#: which the client sees as an abnormal closure (a network drop).
CLOSE_ABNORMAL: Final = 1006
CLOSE_DISCONNECTED: Final = 4014
CLOSE_UNKNOWN_MODE: Final = 4016
CLOSE_DAVE_REQUIRED: Final = 4017
HEARTBEAT_INTERVAL_MS: Final = 13_750


@dataclass(slots=True)
class _Grant:
    channel_id: int
    session_id: str
    token: str


class ClientConnection:
    """One real client's voice session: its websocket, SSRC, key and UDP address.

    Messages are queued and written by one task, so synchronous callers (the
    room, the scenario) can send, and the order on the wire is the call order.
    """

    __slots__ = ("server", "user_id", "guild_id", "channel_id", "session_id", "token", "ssrc",
                 "ws", "address", "cipher", "mode", "client_ssrc", "_seq", "_outbox", "_writer",
                 "joined", "media")

    def __init__(self, server: VoiceServer, user_id: int, guild_id: int, grant: _Grant, ssrc: int,
                 media: MediaServer) -> None:
        self.server = server
        #: The UDP socket of the endpoint this client connected to.
        self.media = media
        self.user_id = user_id
        self.guild_id = guild_id
        self.channel_id = grant.channel_id
        self.session_id = grant.session_id
        self.token = grant.token
        self.ssrc = ssrc
        self.ws: web.WebSocketResponse | None = None
        self.address: Address | None = None
        self.cipher: TransportCipher | None = None
        self.mode: str | None = None
        #: What the client said its own SSRC is (op 5 from the client).
        self.client_ssrc: int | None = None
        self.joined = False
        self._seq = 0
        self._outbox: asyncio.Queue[tuple[web.WebSocketResponse, str | bytes] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def attach(self, ws: web.WebSocketResponse) -> None:
        """Write this session's messages to `ws` from now on (first connect or RESUME)."""
        self.ws = ws
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def send_json(self, op: int, data: dict[str, Any]) -> None:
        """Queue a JSON message; server messages carry `seq` in v8."""
        if self.ws is None:
            return
        self._seq += 1
        self._outbox.put_nowait((self.ws, json.dumps({"op": op, "d": data, "seq": self._seq})))

    def send_binary(self, op: int, payload: bytes) -> None:
        """Queue a binary message `[u16 seq][u8 op][payload]`."""
        if self.ws is None:
            return
        self._seq += 1
        self._outbox.put_nowait((self.ws, struct.pack(">HB", self._seq & 0xFFFF, op) + payload))

    def send_media(self, packet: RtpPacket) -> bool:
        """Seal `packet` with this client's key and send it to its UDP address."""
        if self.cipher is None or self.address is None:
            return False
        if not self.media.send(self.cipher.seal_rtp(packet), self.address):
            return False
        log = self.server.deliveries.get(self.user_id)
        if log is not None:
            log.append((packet.ssrc, packet.seq))
        return True

    def send_datagram(self, clear: bytes, secret: bytes | None) -> bool:
        """Send `clear` (+ `secret` sealed with this client's cipher, if given) over UDP."""
        if self.address is None or (secret is not None and self.cipher is None):
            return False
        data = clear if secret is None else self.cipher.seal(clear, secret)  # type: ignore[union-attr]
        return self.media.send(data, self.address)

    async def close(self, code: int) -> None:
        """Close the websocket with `code` (the session stays resumable);
        `CLOSE_ABNORMAL` aborts the connection without a close frame."""
        ws = self.ws
        if ws is None or ws.closed:
            return
        if code == CLOSE_ABNORMAL:
            transport = self.server.transport_of(ws)
            if transport is not None:
                transport.abort()
                return
        await ws.close(code=code)

    def stop_writer(self) -> None:
        """End the writer task once the queue is drained."""
        self._outbox.put_nowait(None)

    async def _write_loop(self) -> None:
        while (item := await self._outbox.get()) is not None:
            ws, data = item
            if ws.closed:
                continue
            try:
                if isinstance(data, str):
                    await ws.send_str(data)
                else:
                    await ws.send_bytes(data)
            except (ConnectionError, RuntimeError) as exc:
                _log.debug("voice ws write to %d failed: %s", self.user_id, exc)


@dataclass(slots=True)
class _Endpoint:
    """One address of the voice server: a TLS websocket port and its UDP socket."""

    address: str
    media: MediaServer
    runner: web.AppRunner


class VoiceServer:
    """The loopback Discord's voice server (one endpoint, one UDP socket, many rooms;
    `add_endpoint` opens more, sharing the rooms).

    `dave`: run DAVE (protocol version 1) in every room; clients that cannot
    are closed with 4017 as Discord does. `modes`: the transport modes offered
    in READY, in order of the server's preference.
    """

    def __init__(self, world: World, ssl_context: ssl.SSLContext, *, dave: bool = True,
                 modes: tuple[str, ...] = (MODE_AES_GCM, MODE_XCHACHA)) -> None:
        self.world = world
        self.ssl_context = ssl_context
        self.dave_version = 1 if dave else 0
        self.modes = modes
        #: The first endpoint's UDP socket.
        self.media = MediaServer(self._on_discovery)
        self.rooms: dict[int, VoiceRoom] = {}
        self.connections: dict[tuple[int, int], ClientConnection] = {}
        #: Where VOICE_SERVER_UPDATE sends clients now: the newest endpoint.
        self.endpoint = ""
        self.endpoints: list[_Endpoint] = []
        self._transports: dict[int, asyncio.BaseTransport] = {}
        self._grants: dict[tuple[int, int], _Grant] = {}
        self._by_ssrc: dict[int, ClientConnection] = {}
        self._ssrcs: set[int] = set()
        self._speakers: set[int] = set()
        #: (ssrc, seq) of every media packet sent to a user's clients, for the users
        #: `log_deliveries` named: what reached them, whatever their connection went through.
        self.deliveries: dict[int, list[tuple[int, int]]] = {}
        world.subscribe(self._on_world)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Bind the TLS websocket and the UDP socket on 127.0.0.1."""
        await self._open_endpoint(self.media)
        _log.info("voice server at wss://%s, UDP %d, DAVE v%d", self.endpoint, self.media.port,
                  self.dave_version)

    async def add_endpoint(self) -> str:
        """Open another websocket port and UDP socket on the same rooms and make it
        the endpoint new VOICE_SERVER_UPDATEs name; returns it (``host:port``)."""
        media = MediaServer(self._on_discovery)
        endpoint = await self._open_endpoint(media)
        _log.info("voice server endpoint added at wss://%s, UDP %d", endpoint, media.port)
        return endpoint

    async def _open_endpoint(self, media: MediaServer) -> str:
        await media.start()
        app = web.Application()

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle_ws(request, media)

        app.router.add_get("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        self.endpoint = f"127.0.0.1:{sock.getsockname()[1]}"
        self.endpoints.append(_Endpoint(self.endpoint, media, runner))
        return self.endpoint

    async def stop(self) -> None:
        """Close every voice connection and every endpoint's sockets."""
        for conn in list(self.connections.values()):
            await conn.close(1001)
            conn.stop_writer()
        for endpoint in self.endpoints:
            await endpoint.runner.cleanup()
            endpoint.media.stop()
        self.endpoints.clear()

    # -- the gateway's side -------------------------------------------------

    def authorize(self, *, guild_id: int, channel_id: int, user_id: int, session_id: str, token: str) -> None:
        """Allow `user_id` to IDENTIFY with this session id and token for `channel_id`."""
        self._grants[(guild_id, user_id)] = _Grant(channel_id, session_id, token)

    def disconnect(self, guild_id: int, user_id: int) -> None:
        """The client left voice, was kicked or moved: end its voice session."""
        self._grants.pop((guild_id, user_id), None)
        conn = self.connections.pop((guild_id, user_id), None)
        if conn is None:
            return
        self._drop(conn)
        asyncio.get_running_loop().create_task(self._close_and_stop(conn, CLOSE_DISCONNECTED))

    # -- controls for fault tests ------------------------------------------

    async def force_close(self, user_id: int, code: int = CLOSE_SESSION_INVALID) -> int:
        """Close `user_id`'s voice websocket(s) with `code` (`CLOSE_ABNORMAL`: abort the
        connection); discord.py reconnects (4015: resumes). Returns how many were closed."""
        closing = [c for c in self.connections.values() if c.user_id == user_id and c.ws is not None]
        for conn in closing:
            await conn.close(code)
        return len(closing)

    def log_deliveries(self, user_id: int) -> list[tuple[int, int]]:
        """Record from now on the (ssrc, seq) of each media packet sent to `user_id`, on
        any endpoint and connection; returns the live list (only ever appended to, so
        `list(...)` copies it safely from another thread)."""
        return self.deliveries.setdefault(user_id, [])

    def silence(self, seconds: float) -> None:
        """UDP goes quiet for `seconds`: no media reaches any client on any endpoint."""
        for endpoint in self.endpoints:
            endpoint.media.silence(seconds)

    def transport_of(self, ws: web.WebSocketResponse) -> asyncio.BaseTransport | None:
        """The TCP transport under a client's websocket (to abort it)."""
        return self._transports.get(id(ws))

    # -- what speakers use --------------------------------------------------

    def new_ssrc(self) -> int:
        """A fresh SSRC no one in this server uses."""
        while True:
            ssrc = secrets.randbits(32) or 1
            if ssrc not in self._ssrcs:
                self._ssrcs.add(ssrc)
                return ssrc

    def register_speaker(self, user_id: int) -> None:
        """Mark `user_id` as a simulated speaker: its voice states move it between rooms."""
        self._speakers.add(user_id)

    def room(self, guild_id: int, channel_id: int) -> VoiceRoom:
        """The room of a voice channel (created on first use)."""
        room = self.rooms.get(channel_id)
        if room is None:
            # Discord runs no DAVE on stages: their media is only transport-encrypted.
            dave = 0 if self.world.is_stage(guild_id, channel_id) else self.dave_version
            room = self.rooms[channel_id] = VoiceRoom(guild_id, channel_id, dave_version=dave)
        return room

    def _on_world(self, event: str, data: dict[str, Any]) -> None:
        if event != "voice_state":
            return
        state = data["state"]
        if state.user_id not in self._speakers:
            return
        if state.channel_id is not None:
            self.room(state.guild_id, state.channel_id).set_suppressed(state.user_id, state.suppress)
        before = data.get("before_channel_id")
        if before is not None and before != state.channel_id and before in self.rooms:
            self.rooms[before].remove_speaker(state.user_id)
        if state.channel_id is not None:
            self.room(state.guild_id, state.channel_id).add_speaker(state.user_id)

    # -- the websocket ------------------------------------------------------

    async def _handle_ws(self, request: web.Request, media: MediaServer) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, compress=True)
        await ws.prepare(request)
        if request.transport is not None:
            self._transports[id(ws)] = request.transport
        if request.query.get("v") != "8":
            _log.warning("voice client asked for gateway v%s; this fake speaks v8", request.query.get("v"))
        await ws.send_str(json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}))
        conn: ClientConnection | None = None
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    conn = await self._on_text(ws, media, conn, json.loads(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    if conn is None or len(msg.data) < 1:
                        await ws.close(code=CLOSE_NOT_AUTHENTICATED)
                        break
                    self._on_binary(conn, msg.data)
        except ConnectionResetError:
            # The client hung up while an answer was on its way: Discord just drops it.
            _log.debug("voice client went away mid-answer")
        finally:
            self._transports.pop(id(ws), None)
            if conn is not None and conn.ws is ws:
                conn.ws = None
                self._drop(conn)
        return ws

    async def _on_text(self, ws: web.WebSocketResponse, media: MediaServer, conn: ClientConnection | None,
                       msg: dict[str, Any]) -> ClientConnection | None:
        op, d = msg.get("op"), msg.get("d") or {}
        if op == OP_HEARTBEAT:
            payload = {"t": d.get("t") if isinstance(d, dict) else d}
            await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK, "d": payload}))
            return conn
        if op == OP_IDENTIFY:
            return await self._identify(ws, media, d)
        if op == OP_RESUME:
            return await self._resume(ws, d)
        if conn is None:
            await ws.close(code=CLOSE_NOT_AUTHENTICATED)
            return None
        if op == OP_SELECT_PROTOCOL:
            await self._select_protocol(conn, d)
        elif op == OP_SPEAKING:
            conn.client_ssrc = d.get("ssrc")
        elif op in _DAVE_CLIENT_OPS:
            self.room(conn.guild_id, conn.channel_id).dave_from_client(conn.user_id, op, d)
        else:
            _log.debug("voice op %s from %d ignored", op, conn.user_id)
        return conn

    def _on_binary(self, conn: ClientConnection, data: bytes) -> None:
        op = data[0]
        if op in _DAVE_CLIENT_OPS:
            self.room(conn.guild_id, conn.channel_id).dave_from_client(conn.user_id, op, bytes(data[1:]))
        else:
            _log.debug("binary voice op %d from %d ignored", op, conn.user_id)

    async def _identify(self, ws: web.WebSocketResponse, media: MediaServer,
                        d: dict[str, Any]) -> ClientConnection | None:
        try:
            guild_id, user_id = int(d["server_id"]), int(d["user_id"])
        except (KeyError, TypeError, ValueError):
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED)
            return None
        grant = self._grants.get((guild_id, user_id))
        if grant is None or grant.session_id != d.get("session_id") or grant.token != d.get("token"):
            _log.info("voice IDENTIFY of %d refused: no matching authorization", user_id)
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED)
            return None
        required = self.room(guild_id, grant.channel_id).dave_version  # none on a stage
        if required and int(d.get("max_dave_protocol_version") or 0) < required:
            await ws.close(code=CLOSE_DAVE_REQUIRED, message=b"DAVE protocol required")
            return None
        old = self.connections.pop((guild_id, user_id), None)
        if old is not None:  # a fresh IDENTIFY replaces the old session
            self._drop(old)
            await self._close_and_stop(old, CLOSE_SESSION_INVALID)
        conn = ClientConnection(self, user_id, guild_id, grant, self.new_ssrc(), media)
        conn.attach(ws)
        self.connections[(guild_id, user_id)] = conn
        self._by_ssrc[conn.ssrc] = conn
        conn.send_json(OP_READY, {
            "ssrc": conn.ssrc, "ip": "127.0.0.1", "port": media.port,
            "modes": list(self.modes), "experiments": [],
        })
        return conn

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> ClientConnection | None:
        try:
            key = (int(d["server_id"]), int(self._user_of_session(d.get("session_id"))))
        except (KeyError, TypeError, ValueError):
            await ws.close(code=CLOSE_SESSION_INVALID)
            return None
        conn = self.connections.get(key)
        if conn is None or conn.token != d.get("token") or conn.cipher is None:
            await ws.close(code=CLOSE_SESSION_INVALID)
            return None
        conn.attach(ws)
        conn.send_json(OP_RESUMED, {})
        # discord.py waits for a SESSION_DESCRIPTION on the new socket before it counts as connected.
        self._describe_and_join(conn)
        return conn

    def _user_of_session(self, session_id: Any) -> int:
        for (_, user_id), conn in self.connections.items():
            if conn.session_id == session_id:
                return user_id
        raise KeyError(session_id)

    async def _select_protocol(self, conn: ClientConnection, d: dict[str, Any]) -> None:
        mode = (d.get("data") or {}).get("mode")
        if mode not in self.modes:
            await conn.close(CLOSE_UNKNOWN_MODE)
            return
        conn.mode = mode
        conn.cipher = TransportCipher(mode, os.urandom(32))
        self._describe_and_join(conn)

    def _describe_and_join(self, conn: ClientConnection) -> None:
        assert conn.cipher is not None
        room = self.room(conn.guild_id, conn.channel_id)
        conn.send_json(OP_SESSION_DESCRIPTION, {
            "mode": conn.mode, "secret_key": list(conn.cipher.key), "audio_codec": "opus",
            "video_codec": None, "media_session_id": secrets.token_hex(16),
            "dave_protocol_version": room.dave_version,
        })
        # DAVE's op 25 must follow op 4: discord.py ignores binary frames until it has a session.
        room.remove_client(conn.user_id)
        room.add_client(conn)
        conn.joined = True

    def _on_discovery(self, ssrc: int, address: Address) -> None:
        conn = self._by_ssrc.get(ssrc)
        if conn is None:
            _log.debug("IP discovery for unknown SSRC %d", ssrc)
            return
        conn.address = address

    def _drop(self, conn: ClientConnection) -> None:
        """Take a connection out of its room (its websocket is gone or it left)."""
        if conn.joined:
            conn.joined = False
            room = self.rooms.get(conn.channel_id)
            if room is not None and room.clients.get(conn.user_id) is conn:
                room.remove_client(conn.user_id)

    async def _close_and_stop(self, conn: ClientConnection, code: int) -> None:
        self._by_ssrc.pop(conn.ssrc, None)
        await conn.close(code)
        conn.stop_writer()
