"""``RecordingVoiceClient``: discord.py's VoiceClient plus the receive layer.

discord.py's public hooks carry the receive layer: ``create_connection_state()``
to pass a websocket ``hook`` (JSON messages, after discord.py handled them)
and ``add_socket_listener``/``remove_socket_listener`` on the connection
state for the UDP datagrams. What needs more of discord.py goes through
:mod:`bot.voice.discordpy`. Use it as
``await channel.connect(cls=RecordingVoiceClient)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Callable

import discord

from .discordpy import (
    CLIENT_DISCONNECT,
    CLIENTS_CONNECT,
    SESSION_DESCRIPTION,
    SPEAKING,
    DiscordVoiceWebSocket,
    ReceivingConnectionState,
)
from .reader import ReaderFailure, SharedSocketReader
from .receiver import PacketSink, VoiceReceiver
from .ssrc_map import SsrcMap
from .stamped import enable_timestamps
from .stats import RecordingStats
from .transport import UnsupportedModeError
from .watchdog import PollerWatchdog

__all__ = ("RecordingVoiceClient",)

_log = logging.getLogger(__name__)

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


def _adopt_socket(plain: socket.socket) -> socket.socket:
    """The voice UDP socket to use in place of the one discord.py made: it wakes the
    reader when closed, has a larger receive buffer and kernel arrival times."""
    sock = _WakingSocket(plain.family, plain.type, plain.proto, plain.detach())
    sock.setblocking(False)
    enlarge_receive_buffer(sock)
    enable_timestamps(sock)  # before the first datagram (see bot.voice.stamped)
    return sock


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
    reconnect, because DAVE key changes are no longer being processed. The same
    happens, with a :class:`~bot.voice.reader.ReaderFailure`, if the shared socket
    reader cannot read this connection's socket: nothing would reach the sink.
    """

    #: The connection state this client made for discord.py (discord.py keeps it too).
    _receiving_state: ReceivingConnectionState

    def __init__(self, client: discord.Client, channel: Any) -> None:
        self._ssrc_map: SsrcMap[Any] = SsrcMap()
        self._receiver: VoiceReceiver | None = None
        self._receive_failed = asyncio.Event()
        #: Why receiving broke (the poller's exception), or ``None``.
        self.receive_error: BaseException | None = None
        super().__init__(client, channel)
        self._watchdog = PollerWatchdog(self._receiving_state.poller_task, self._on_poller_death)

    def create_connection_state(self) -> ReceivingConnectionState:
        """discord.py's connection state, read by the process's shared socket reader
        (see :mod:`bot.voice.reader`), on sockets this module adopts, with our
        websocket hook installed."""
        state = ReceivingConnectionState(
            self,
            hook=self._on_voice_ws_message,
            socket_reader=lambda connection: SharedSocketReader(connection, on_failure=self._on_reader_failure),
            adopt_socket=_adopt_socket,
            on_websocket_connecting=self.expect_new_key,
        )
        self._receiving_state = state
        return state

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
        receiver = VoiceReceiver(sink, self._receiving_state, self._ssrc_map, should_record=should_record)
        try:
            receiver.set_transport(self.mode, self.secret_key)
        except UnsupportedModeError as exc:
            raise discord.ClientException(f"Cannot record: {exc}.") from None
        self._receiver = receiver
        self._receiving_state.add_socket_listener(receiver.on_datagram)
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
        self._receiving_state.remove_socket_listener(receiver.on_datagram)
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
        runner = self._receiving_state.poller_task()
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
        if op == SPEAKING:
            # server->client SPEAKING names the sender; our own echo has no user_id
            if "user_id" in data:
                self._ssrc_map.bind(int(data["ssrc"]), int(data["user_id"]))
        elif op == CLIENT_DISCONNECT:
            self._ssrc_map.forget_user(int(data["user_id"]))
        elif op == CLIENTS_CONNECT:
            _log.debug("users in voice: %s", data.get("user_ids"))
        elif op == SESSION_DESCRIPTION and self._receiver is not None:
            # a voice reconnect negotiates a new key; the old one opens nothing now
            try:
                self._receiver.set_transport(data["mode"], data["secret_key"])
            except UnsupportedModeError as exc:
                _log.error("voice reconnect negotiated something this recorder cannot open: %s", exc)

    def _on_reader_failure(self, error: BaseException) -> None:
        """The shared reader failed (on its thread): report it on the client's loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
            self.client.loop.call_soon_threadsafe(self._receive_broke, error)

    def _on_poller_death(self, error: BaseException) -> None:
        _log.error(
            "voice websocket of channel %s stopped (%s: %s); receiving can no longer follow key changes",
            self.channel.id,
            type(error).__name__,
            error,
        )
        self._receive_broke(error)

    def _receive_broke(self, error: BaseException) -> None:
        """Receiving is broken for good: say why, once, to whoever waits on it."""
        if self.receive_error is not None:
            return
        if isinstance(error, ReaderFailure):
            _log.error("voice socket of channel %s can no longer be read: %s", self.channel.id, error)
        self.receive_error = error
        self._receive_failed.set()
        self.client.dispatch("voice_receive_error", self, error)
