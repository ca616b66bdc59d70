"""``RecordingVoiceClient``: discord.py's VoiceClient plus the receive layer.

Only hooks discord.py 2.7.1 offers are used: ``create_connection_state()``
to pass a websocket ``hook`` (JSON messages, after discord.py handled them)
and ``add_socket_listener``/``remove_socket_listener`` on the connection
state for the UDP datagrams. Use it as
``await channel.connect(cls=RecordingVoiceClient)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Callable

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.utils import MISSING
from discord.voice_state import ConnectionFlowState, VoiceConnectionState

from .reader import SharedSocketReader
from .stamped import enable_timestamps
from .receiver import PacketSink, VoiceReceiver
from .ssrc_map import SsrcMap
from .stats import RecordingStats
from .transport import UnsupportedModeError
from .watchdog import PollerWatchdog
from .websocket import ListeningVoiceWebSocket

__all__ = ("RecordingVoiceClient",)

_log = logging.getLogger(__name__)

_SESSION_DESCRIPTION = DiscordVoiceWebSocket.SESSION_DESCRIPTION
_SPEAKING = DiscordVoiceWebSocket.SPEAKING
_CLIENTS_CONNECT = DiscordVoiceWebSocket.CLIENTS_CONNECT
_CLIENT_DISCONNECT = DiscordVoiceWebSocket.CLIENT_DISCONNECT

#: UDP receive buffer asked for. Each queued datagram costs the kernel about
#: 1 KiB of accounting (skb truesize), so Linux's default 208 KiB holds only
#: ~200 datagrams: 13 ms of traffic at 300 speakers, less than one GC pause or
#: GIL hand-off. 4 MiB holds about a quarter of a second at that load.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024


def _retrieve_poller_error(task: asyncio.Task[Any]) -> None:
    """Consume the error a poller ended with after disconnecting: it no longer matters."""
    if not task.cancelled() and task.exception() is not None:
        _log.debug("voice websocket poller ended after disconnect: %r", task.exception())


class _WakingSocket(socket.socket):
    """A UDP socket whose ``close()`` first wakes threads blocked in ``select()`` on it.

    Closing a descriptor does not wake a ``select()`` another thread sleeps in.
    discord.py's SocketReader selects with a 30 s timeout and, once a receive
    listener is registered, is always inside that call; on a voice reconnect it
    kept waiting on the closed socket, so the new socket's IP-discovery reply
    went unread and the reconnect stalled. ``shutdown()`` wakes it (Linux does
    so even for unconnected UDP sockets).
    """

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.shutdown(socket.SHUT_RDWR)
        super().close()


class _RecordingConnectionState(VoiceConnectionState):
    """discord.py's connection state read by the process's shared socket reader
    (see :mod:`bot.voice.reader`), with a socket that wakes the reader when
    closed, and repairs of discord.py 2.7.1's voice reconnect flow (see the methods)."""

    def __init__(self, voice_client: Any, *, hook: Any = None) -> None:
        super().__init__(voice_client, hook=hook)
        # discord.py has started a reader thread of its own (paused, no callbacks). Its
        # run() clears the stop flag as it begins, so stop it until it is gone.
        own = self._socket_reader
        while own.is_alive():
            own.stop()
            own.join(0.01)
        self._socket_reader = SharedSocketReader(self)

    def _create_socket(self) -> None:
        super()._create_socket()
        plain = self.socket
        self.socket = _WakingSocket(plain.family, plain.type, plain.proto, plain.detach())
        self.socket.setblocking(False)
        enlarge_receive_buffer(self.socket)
        enable_timestamps(self.socket)  # before the first datagram (see bot.voice.stamped)

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

    async def _connect_websocket(self, resume: bool) -> DiscordVoiceWebSocket:
        """discord.py's, with :class:`ListeningVoiceWebSocket` (see there why), and the
        receive layer told that a new session key may be on its way."""
        client = self.voice_client
        if isinstance(client, RecordingVoiceClient):
            client.expect_new_key()
        seq_ack = self.ws.seq_ack if self.ws is not MISSING else -1
        ws = await ListeningVoiceWebSocket.from_connection_state(self, resume=resume, hook=self.hook, seq_ack=seq_ack)
        self.state = ConnectionFlowState.websocket_connected
        return ws


def enlarge_receive_buffer(sock: socket.socket) -> int:
    """Ask for :data:`RECEIVE_BUFFER_BYTES`; past ``net.core.rmem_max`` only
    ``SO_RCVBUFFORCE`` (root or CAP_NET_ADMIN) is heeded, so try that first.
    Returns the size granted."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER_BYTES)
            break
        except OSError:
            continue
    # Linux reports double the size asked for (it counts its bookkeeping too).
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    if granted < RECEIVE_BUFFER_BYTES:
        _log.warning("voice UDP receive buffer is %d KiB, not the %d KiB asked for; raise "
                     "net.core.rmem_max to avoid kernel drops with many speakers",
                     granted // 1024, RECEIVE_BUFFER_BYTES // 1024)
    else:
        _log.debug("voice UDP receive buffer: %d KiB", granted // 1024)
    return granted


class RecordingVoiceClient(discord.VoiceClient):
    """A voice client that can record every speaker to a sink.

    The SSRC map is kept from the moment the connection exists, so speakers
    announced before :meth:`start_recording` are known when it starts.

    If discord.py's voice websocket poller dies (see :mod:`bot.voice.watchdog`),
    :attr:`receive_error` is set, :meth:`wait_for_receive_error` returns, and
    the client event ``voice_receive_error`` is dispatched with
    ``(voice_client, error)``: the bot should stop the recording cleanly and
    reconnect, because DAVE key changes are no longer being processed.
    """

    def __init__(self, client: discord.Client, channel: Any) -> None:
        self._ssrc_map: SsrcMap[Any] = SsrcMap()
        self._receiver: VoiceReceiver | None = None
        self._receive_failed = asyncio.Event()
        #: Why receiving broke (the poller's exception), or ``None``.
        self.receive_error: BaseException | None = None
        super().__init__(client, channel)
        self._watchdog = PollerWatchdog(self._connection, self._on_poller_death)

    def create_connection_state(self) -> VoiceConnectionState:
        """discord.py's connection state, with our websocket hook installed."""
        return _RecordingConnectionState(self, hook=self._on_voice_ws_message)

    async def connect(self, *, reconnect: bool, timeout: float, self_deaf: bool = False, self_mute: bool = False) -> None:
        """Connect as discord.py does, then start watching the websocket poller."""
        await super().connect(reconnect=reconnect, timeout=timeout, self_deaf=self_deaf, self_mute=self_mute)
        self._watchdog.start()

    # -- recording ---------------------------------------------------------

    def start_recording(self, sink: PacketSink, *, should_record: Callable[[int], bool] | None = None) -> VoiceReceiver:
        """Start feeding every speaker's Opus packets to ``sink``.

        :param should_record: called with a user id on the socket thread
            before DAVE decryption; returning ``False`` skips that user's
            packet (opt-outs). Must be cheap.
        :raises discord.ClientException: not connected, already recording, or
            the negotiated encryption mode cannot be opened.
        """
        if not self.is_connected():
            raise discord.ClientException("Not connected to voice.")
        if self._receiver is not None:
            raise discord.ClientException("Already recording in this voice channel.")
        receiver = VoiceReceiver(sink, self._connection, self._ssrc_map, should_record=should_record)
        try:
            receiver.set_transport(self.mode, self.secret_key)
        except UnsupportedModeError as exc:
            raise discord.ClientException(f"Cannot record: {exc}.") from None
        self._receiver = receiver
        self._connection.add_socket_listener(receiver.on_datagram)
        _log.info("recording started in channel %s", self.channel.id)
        return receiver

    def stop_recording(self) -> RecordingStats:
        """Stop feeding the sink and return the final :meth:`recording_stats`.

        Held packets of speakers mapped by now are flushed to the sink. The
        sink stays open: closing it is the caller's job.
        """
        receiver = self._receiver
        if receiver is None:
            raise discord.ClientException("Not recording.")
        self._connection.remove_socket_listener(receiver.on_datagram)
        receiver.close()
        stats = self._stats_of(receiver)
        self._receiver = None
        _log.info("recording stopped in channel %s: %s", self.channel.id, stats.receive.as_dict())
        return stats

    def expect_new_key(self) -> None:
        """A voice websocket is connecting (reconnect, resume, moved server): media sealed
        with its key may come before its SESSION_DESCRIPTION does; have the receiver keep it."""
        if self._receiver is not None:
            self._receiver.await_new_key()

    def is_recording(self) -> bool:
        """Whether a sink is being fed."""
        return self._receiver is not None

    def recording_stats(self) -> RecordingStats:
        """The receiver's and the sink's counters of the current recording."""
        if self._receiver is None:
            raise discord.ClientException("Not recording.")
        return self._stats_of(self._receiver)

    @staticmethod
    def _stats_of(receiver: VoiceReceiver) -> RecordingStats:
        return RecordingStats(receive=receiver.stats(), engine=receiver.sink.stats())

    async def wait_for_receive_error(self) -> BaseException:
        """Wait until receiving breaks (the voice websocket poller died) and return why."""
        await self._receive_failed.wait()
        assert self.receive_error is not None
        return self.receive_error

    def cleanup(self) -> None:
        """Stop the watchdog and any recording, then discord.py's cleanup."""
        self._watchdog.stop()
        runner: asyncio.Task[Any] | None = getattr(self._connection, "_runner", None)
        if runner is not None:
            # discord.py's disconnect closes the websocket without cancelling the
            # poller; a DAVE commit arriving meanwhile (someone left as we stopped)
            # ends it with a send error nobody retrieves, printed as a traceback.
            runner.add_done_callback(_retrieve_poller_error)
        if self._receiver is not None:
            self.stop_recording()
        super().cleanup()

    # -- hooks ---------------------------------------------------------------

    async def _on_voice_ws_message(self, ws: DiscordVoiceWebSocket, msg: dict[str, Any]) -> None:
        """discord.py's websocket hook. Must never raise: an exception here
        would end discord.py's voice poller."""
        try:
            self._handle_voice_message(msg)
        except Exception as exc:
            _log.warning("ignoring malformed voice websocket message op=%s: %r", msg.get("op"), exc)

    def _handle_voice_message(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        data = msg.get("d") or {}
        if op == _SPEAKING:
            # server->client SPEAKING names the sender; our own echo has no user_id
            if "user_id" in data:
                self._ssrc_map.bind(int(data["ssrc"]), int(data["user_id"]))
        elif op == _CLIENT_DISCONNECT:
            self._ssrc_map.forget_user(int(data["user_id"]))
        elif op == _CLIENTS_CONNECT:
            _log.debug("users in voice: %s", data.get("user_ids"))
        elif op == _SESSION_DESCRIPTION and self._receiver is not None:
            # a voice reconnect negotiates a new key; the old one opens nothing now
            try:
                self._receiver.set_transport(data["mode"], data["secret_key"])
            except UnsupportedModeError as exc:
                _log.error("voice reconnect negotiated something this recorder cannot open: %s", exc)

    def _on_poller_death(self, error: BaseException) -> None:
        self.receive_error = error
        _log.error(
            "voice websocket of channel %s stopped (%s: %s); receiving can no longer follow key changes",
            self.channel.id,
            type(error).__name__,
            error,
        )
        self._receive_failed.set()
        self.client.dispatch("voice_receive_error", self, error)
