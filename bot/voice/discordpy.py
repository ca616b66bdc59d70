"""The fence: every discord.py private the voice layer touches, and only here.

Written against discord.py 2.7.1 (:data:`WRITTEN_AGAINST`). Outside this
module, bot/voice uses discord.py's public API only (``discord.VoiceClient``,
its ``create_connection_state()`` hook, ``add_socket_listener`` and
``remove_socket_listener``) and the small typed pieces below. Each private
piece relied on is listed in :data:`RELIED_ON` with the reason;
``tests/voice/test_discordpy_fence.py`` checks that the installed discord.py
still has every one of them. In short:

* ``VoiceConnectionState`` (``discord.voice_state``, internal):

  - ``__init__`` starts a ``SocketReader`` thread in ``_socket_reader``: it is
    stopped and replaced by a reader of ours (one thread reads every voice
    connection of the process, :mod:`bot.voice.reader`);
  - ``_create_socket`` makes each UDP socket: overridden so the voice layer
    adopts it (a close that wakes the reader, a larger receive buffer, kernel
    arrival times) before any datagram is read;
  - ``voice_state_update`` and ``_disconnected``, ``_voice_connect`` and the
    flow ``state`` (``ConnectionFlowState``, ``token``, ``endpoint``,
    ``session_id``), ``_connect_websocket`` (``ws.seq_ack``, ``MISSING``,
    ``hook``): overridden to repair three reconnect failures of 2.7.1 (see
    :class:`ReceivingConnectionState`) and to use :class:`_ListeningVoiceWebSocket`;
  - ``_wait_for_state`` and ``_state_event``: overridden so that a flow state
    reached just before the wait begins is not missed;
  - ``_runner``: the voice websocket poller task, which can die silently
    (:mod:`bot.voice.watchdog`);
  - ``dave_session``, ``dave_protocol_version``: the DAVE session discord.py
    keeps, read for every frame (:class:`DaveState`).

* ``SocketReader`` (``discord.voice_state``, internal): its listener list
  ``_callbacks``, its pause flag ``_running``, ``state`` and the methods
  discord.py calls on a connection's reader (:class:`SocketReaderBase`).

* ``DiscordVoiceWebSocket`` (``discord.gateway``, internal): ``discover_ip``
  (overridden: listen before asking), ``from_connection_state``, ``loop``,
  ``_connection``, and the opcodes the websocket hook dispatches on.

Upgrading discord.py: run that test first; then read the overridden methods'
new source against the overrides here, which copy parts of them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Protocol

import discord
import discord.utils
from discord.gateway import DiscordVoiceWebSocket
from discord.utils import MISSING
from discord.voice_state import ConnectionFlowState, SocketReader, VoiceConnectionState

from .rtp import IP_DISCOVERY_REPLY, IP_DISCOVERY_REQUEST, IP_DISCOVERY_SIZE

__all__ = (
    "CLIENTS_CONNECT",
    "CLIENT_DISCONNECT",
    "RELIED_ON",
    "SESSION_DESCRIPTION",
    "SPEAKING",
    "WRITTEN_AGAINST",
    "DaveState",
    "DiscordVoiceWebSocket",
    "Kind",
    "ReceivingConnectionState",
    "Reliance",
    "SocketListener",
    "SocketReaderBase",
    "WebsocketHook",
)

_log = logging.getLogger(__name__)

#: The discord.py version this module was written against and checked with.
WRITTEN_AGAINST: Final = "2.7.1"

#: Voice gateway opcodes the websocket hook acts on.
SESSION_DESCRIPTION: Final[int] = DiscordVoiceWebSocket.SESSION_DESCRIPTION
SPEAKING: Final[int] = DiscordVoiceWebSocket.SPEAKING
CLIENTS_CONNECT: Final[int] = DiscordVoiceWebSocket.CLIENTS_CONNECT
CLIENT_DISCONNECT: Final[int] = DiscordVoiceWebSocket.CLIENT_DISCONNECT

#: discord.py's websocket hook: called with every JSON message after discord.py handled it.
WebsocketHook = Callable[[DiscordVoiceWebSocket, dict[str, Any]], Coroutine[Any, Any, None]]
#: A socket listener: ``callback(datagram)``, or ``callback(datagram, arrival)`` when
#: marked with :func:`bot.voice.reader.takes_arrival`.
SocketListener = Callable[..., Any]


class Kind(enum.Enum):
    """How a relied-on piece is used, which says how to check that it is still there."""

    #: A method called or overridden (with :attr:`Reliance.params` among its parameters).
    METHOD = "method"
    #: A coroutine method called or overridden: an override must stay ``async``.
    COROUTINE = "coroutine"
    #: A class or module attribute read.
    CONSTANT = "constant"
    #: An attribute every instance gets in ``__init__``.
    INSTANCE = "instance"
    #: An attribute instances get from another function (:attr:`Reliance.set_by`).
    SET_BY = "set_by"


@dataclass(frozen=True, slots=True)
class Reliance:
    """One piece of discord.py the fence relies on, and why."""

    owner: type | ModuleType
    name: str
    kind: Kind
    why: str
    #: Parameter names a METHOD or COROUTINE must still take.
    params: tuple[str, ...] = ()
    #: For SET_BY: the function whose source assigns the attribute.
    set_by: Callable[..., Any] | None = None


_STATE = VoiceConnectionState
_WS = DiscordVoiceWebSocket
_FLOW = ConnectionFlowState

#: Everything of discord.py this module relies on beyond its public API.
RELIED_ON: Final[tuple[Reliance, ...]] = (
    Reliance(_STATE, "__init__", Kind.METHOD, "extended to replace the socket reader", ("voice_client", "hook")),
    Reliance(_STATE, "_socket_reader", Kind.INSTANCE, "discord.py's reader thread, stopped and replaced"),
    Reliance(_STATE, "_create_socket", Kind.METHOD, "overridden to adopt each new UDP socket"),
    Reliance(_STATE, "socket", Kind.INSTANCE, "the UDP socket, replaced by the adopted one"),
    Reliance(_STATE, "voice_state_update", Kind.COROUTINE, "overridden to clear a stale leave mark", ("data",)),
    Reliance(_STATE, "_disconnected", Kind.INSTANCE, "the leave mark a rejoin must clear"),
    Reliance(_STATE, "_voice_connect", Kind.COROUTINE, "overridden: resume without op 4, ready before asking",
             ("self_deaf", "self_mute")),
    Reliance(_STATE, "state", Kind.CONSTANT, "the connection flow state, read and set by the overrides"),
    Reliance(_STATE, "token", Kind.INSTANCE, "a live session can be resumed only with it"),
    Reliance(_STATE, "endpoint", Kind.INSTANCE, "a live session can be resumed only with it"),
    Reliance(_STATE, "session_id", Kind.INSTANCE, "a live session can be resumed only with it"),
    Reliance(_STATE, "_connect_websocket", Kind.COROUTINE, "overridden to use the listening websocket",
             ("resume",)),
    Reliance(_STATE, "ws", Kind.INSTANCE, "the previous websocket, whose seq_ack a resume sends"),
    Reliance(_STATE, "hook", Kind.INSTANCE, "passed on to each new websocket, as discord.py does"),
    Reliance(_STATE, "ssrc", Kind.INSTANCE, "our SSRC, sent in the IP discovery request"),
    Reliance(_STATE, "_wait_for_state", Kind.COROUTINE, "overridden: no lost wakeup between check and wait",
             ("state", "timeout")),
    Reliance(_STATE, "_state_event", Kind.INSTANCE, "set and cleared at once by every flow state change"),
    Reliance(_STATE, "_runner", Kind.INSTANCE, "the websocket poller task, watched for a silent death"),
    Reliance(_STATE, "dave_session", Kind.INSTANCE, "the DAVE session that decrypts every frame"),
    Reliance(_STATE, "dave_protocol_version", Kind.INSTANCE, "0 means frames are plain Opus"),
    Reliance(_FLOW, "disconnected", Kind.CONSTANT, "flow state before a join is asked for"),
    Reliance(_FLOW, "set_guild_voice_state", Kind.CONSTANT, "flow state once the join is asked for"),
    Reliance(_FLOW, "got_both_voice_updates", Kind.CONSTANT, "flow state a resume starts from"),
    Reliance(_FLOW, "websocket_connected", Kind.CONSTANT, "flow state once the websocket is up"),
    Reliance(_FLOW, "connected", Kind.CONSTANT, "flow state of a live session"),
    Reliance(discord.utils, "MISSING", Kind.CONSTANT, "what ws holds before the first websocket"),
    Reliance(SocketReader, "__init__", Kind.METHOD, "the base of our reader", ("state",)),
    Reliance(SocketReader, "register", Kind.METHOD, "discord.py registers listeners", ("callback",)),
    Reliance(SocketReader, "unregister", Kind.METHOD, "discord.py unregisters listeners", ("callback",)),
    Reliance(SocketReader, "pause", Kind.METHOD, "discord.py pauses reading on disconnect"),
    Reliance(SocketReader, "resume", Kind.METHOD, "discord.py resumes reading on each new socket", ("force",)),
    Reliance(SocketReader, "stop", Kind.METHOD, "discord.py ends reading on disconnect"),
    Reliance(SocketReader, "_callbacks", Kind.INSTANCE, "the listener list our reader calls"),
    Reliance(SocketReader, "_running", Kind.INSTANCE, "set while discord.py wants the socket read"),
    Reliance(SocketReader, "state", Kind.INSTANCE, "the connection whose current socket is read"),
    Reliance(_WS, "discover_ip", Kind.COROUTINE, "overridden to listen for the reply before asking"),
    Reliance(_WS, "from_connection_state", Kind.COROUTINE, "builds each voice websocket",
             ("state", "resume", "hook", "seq_ack")),
    Reliance(_WS, "seq_ack", Kind.INSTANCE, "the last sequence number seen, for a resume"),
    Reliance(_WS, "loop", Kind.INSTANCE, "the event loop the discovery reply is awaited on"),
    Reliance(_WS, "_connection", Kind.SET_BY, "the connection state, for discovery",
             set_by=DiscordVoiceWebSocket.from_connection_state),
    Reliance(_WS, "SESSION_DESCRIPTION", Kind.CONSTANT, "opcode: a new transport key"),
    Reliance(_WS, "SPEAKING", Kind.CONSTANT, "opcode: an SSRC's user"),
    Reliance(_WS, "CLIENTS_CONNECT", Kind.CONSTANT, "opcode: users in the call"),
    Reliance(_WS, "CLIENT_DISCONNECT", Kind.CONSTANT, "opcode: a user left"),
)


class DaveState(Protocol):
    """Where the current DAVE session lives: discord.py's ``VoiceConnectionState`` fits.

    discord.py replaces both as DAVE transitions happen, so they are read on
    every frame, never cached.
    """

    dave_session: Any
    dave_protocol_version: int


class SocketReaderBase(SocketReader):
    """discord.py's ``SocketReader``, kept for its listener list and pause state, for a
    reader whose thread runs elsewhere (:class:`bot.voice.reader.SharedSocketReader`).

    discord.py calls ``register``/``unregister``/``pause``/``resume``/``stop``
    on a connection's reader; each goes through discord.py's bookkeeping and is
    then reported to :meth:`on_change` or :meth:`on_stop`, which subclasses
    define. It is a ``Thread`` only by inheritance: it is never started.
    """

    def __init__(self, state: VoiceConnectionState) -> None:
        super().__init__(state)
        # As discord.py's reader once started: paused until resume(), whatever registers.
        super().pause()

    def listeners(self) -> list[SocketListener]:
        """The registered listeners, in registration order (discord.py's own list: do not keep it)."""
        return self._callbacks

    def reading(self) -> bool:
        """Whether discord.py wants the socket read: listeners registered and not paused."""
        return self._running.is_set()

    def connection_socket(self) -> socket.socket | None:
        """The connection's current UDP socket; ``None`` before its first one exists."""
        sock = self.state.socket
        return sock if isinstance(sock, socket.socket) else None

    def on_change(self) -> None:
        """Called after every register, unregister, pause and resume."""
        raise NotImplementedError

    def on_stop(self) -> None:
        """Called when discord.py ends this connection's reading, before its listeners are dropped."""
        raise NotImplementedError

    def register(self, callback: SocketListener) -> None:
        """Add a listener (discord.py's ``add_socket_listener``)."""
        super().register(callback)
        self.on_change()

    def unregister(self, callback: SocketListener) -> None:
        """Remove a listener (discord.py's ``remove_socket_listener``)."""
        super().unregister(callback)
        self.on_change()

    def pause(self) -> None:
        """Stop reading until :meth:`resume` (discord.py pauses on disconnects)."""
        super().pause()
        self.on_change()

    def resume(self, *, force: bool = False) -> None:
        """Read again, if listeners are registered or ``force`` (discord.py resumes on each new socket)."""
        super().resume(force=force)
        self.on_change()

    def stop(self) -> None:
        """End this connection's reading for good."""
        self.on_stop()
        self._callbacks.clear()


class ReceivingConnectionState(VoiceConnectionState):
    """discord.py's connection state with the receive layer's seams, and repairs of
    discord.py 2.7.1's voice reconnect flow (see the methods).

    :param voice_client: the voice client, as for discord.py's class.
    :param hook: discord.py's websocket hook.
    :param socket_reader: builds the reader that replaces discord.py's own thread.
    :param adopt_socket: given each UDP socket discord.py creates, returns the socket
        to use in its place; runs before any datagram is read.
    :param on_websocket_connecting: called as every voice websocket (connect,
        reconnect, resume, moved server) starts connecting.
    """

    def __init__(
        self,
        voice_client: discord.VoiceClient,
        *,
        hook: WebsocketHook,
        socket_reader: Callable[[VoiceConnectionState], SocketReaderBase],
        adopt_socket: Callable[[socket.socket], socket.socket],
        on_websocket_connecting: Callable[[], None],
    ) -> None:
        self._adopt_socket = adopt_socket
        self._on_websocket_connecting = on_websocket_connecting
        super().__init__(voice_client, hook=hook)
        # discord.py has started a reader thread of its own (paused, no callbacks). Its
        # run() clears the stop flag as it begins, so stop it until it is gone.
        own = self._socket_reader
        while own.is_alive():
            own.stop()
            own.join(0.01)
        self._socket_reader = socket_reader(self)

    def poller_task(self) -> asyncio.Task[Any] | None:
        """discord.py's voice websocket poller task, or ``None``; a reconnect or move replaces it."""
        return self._runner

    def _create_socket(self) -> None:
        super()._create_socket()
        self.socket = self._adopt_socket(self.socket)

    async def voice_state_update(self, data: Any) -> None:
        """discord.py's handling, then forget a stale "left the channel" mark.

        A reconnect after a dropped voice websocket (any close code but 1000,
        4014, 4015, 4021, 4022) leaves the channel and rejoins it; the leave
        sets ``_disconnected`` and nothing clears it on the rejoin. A later
        close with 4014 (Discord moving the call to another voice server) then
        looked like a kick and ended the connection for good.
        """
        await super().voice_state_update(data)
        if data.get("channel_id") is not None:
            self._disconnected.clear()

    async def _voice_connect(self, *, self_deaf: bool = False, self_mute: bool = False) -> None:
        """Ask the main gateway to join (ready for its answers before asking), except when
        resuming a live session.

        After close code 4015 discord.py resumes through its connect flow, which
        sends op 4 again and waits for a VOICE_SERVER_UPDATE. Op 4 for the
        channel the bot is already in brings none, so the resume sat out the
        whole connect timeout and then gave up. A resume needs nothing new from
        the main gateway: token, endpoint and session id are still valid.
        """
        if self.state is ConnectionFlowState.connected and self.token and self.endpoint and self.session_id:
            _log.info("resuming the voice session on %s", self.endpoint)
            self.state = ConnectionFlowState.got_both_voice_updates
            return
        if self.state is ConnectionFlowState.disconnected:
            # discord.py marks the join as asked for only after op 4 is sent. Sending can
            # yield to the loop long enough (a loaded machine, a fast gateway) for the
            # answers to arrive first: VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE were then
            # ignored as unexpected, and the (re)connect waited out its 30 s timeout.
            self.state = ConnectionFlowState.set_guild_voice_state
        await super()._voice_connect(self_deaf=self_deaf, self_mute=self_mute)

    async def _wait_for_state(
        self, state: ConnectionFlowState, *other_states: ConnectionFlowState, timeout: float | None = None
    ) -> None:
        """Wait until the flow state is one of those given, without a lost wakeup.

        discord.py's version checks the state, then waits for the state event in a
        new task. Each state change sets the event and clears it at once, so a change
        made before that task first runs (the answers to op 4 are handled in tasks
        the gateway reader created while op 4 was being sent: a loaded machine, a
        fast gateway) woke nobody, and the connect waited out its whole timeout with
        both answers in hand. Here the check and the wait are one step.
        """
        states = (state, *other_states)
        async with asyncio.timeout(timeout):
            while self.state not in states:
                await self._state_event.wait()

    async def _connect_websocket(self, resume: bool) -> DiscordVoiceWebSocket:
        """discord.py's, with :class:`_ListeningVoiceWebSocket` (see there why), after
        telling the voice layer that a new session key may be on its way."""
        self._on_websocket_connecting()
        seq_ack = self.ws.seq_ack if self.ws is not MISSING else -1
        ws = await _ListeningVoiceWebSocket.from_connection_state(self, resume=resume, hook=self.hook, seq_ack=seq_ack)
        self.state = ConnectionFlowState.websocket_connected
        return ws


class _ListeningVoiceWebSocket(DiscordVoiceWebSocket):
    """discord.py's voice websocket with an IP discovery that listens before it asks.

    discord.py sends the discovery request and only then registers the socket
    listener that waits for the reply. On the first connect nothing else
    listens, so the socket reader is idle and the reply waits in the socket
    until the listener starts it. On a reconnect during a recording the reader
    is already running for the receive layer: on loopback, or any fast network,
    it can read the reply before discord.py's listener is registered. The reply
    then went only to the recorder, discovery waited forever and the reconnect
    hung until its 30 s timeout, after which discord.py kept polling a
    websocket that never became ready (the recording stayed deaf).
    """

    async def discover_ip(self) -> tuple[str, int]:
        """Ask the voice server for our public address, listening for the reply first."""
        state = self._connection
        packet = bytearray(IP_DISCOVERY_SIZE)
        # The length field counts what follows it: everything but type and length.
        struct.pack_into(">HHI", packet, 0, IP_DISCOVERY_REQUEST, IP_DISCOVERY_SIZE - 4, state.ssrc)
        reply: asyncio.Future[bytes] = self.loop.create_future()

        def settle(data: bytes) -> None:
            if not reply.done():
                reply.set_result(data)

        def on_packet(data: bytes) -> None:
            if len(data) == IP_DISCOVERY_SIZE and data[1] == IP_DISCOVERY_REPLY:
                self.loop.call_soon_threadsafe(settle, data)

        reply.add_done_callback(lambda _: state.remove_socket_listener(on_packet))
        state.add_socket_listener(on_packet)
        _log.debug("sending the IP discovery request")
        try:
            await self.loop.sock_sendall(state.socket, packet)
            data = await reply
        finally:
            if not reply.done():
                reply.cancel()  # removes the listener
        # The address is ASCII from byte 8 to the first NUL; the port is the last two bytes.
        ip = data[8:data.index(0, 8)].decode("ascii")
        port = struct.unpack_from(">H", data, len(data) - 2)[0]
        _log.debug("IP discovery: %s port %d", ip, port)
        return ip, port
