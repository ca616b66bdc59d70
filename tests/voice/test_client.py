"""RecordingVoiceClient on discord.py's real connection state, socket reader and UDP.

No Discord here (the end-to-end test through tests/fakediscord covers the
handshake): the connection state is put in the "connected" state by hand with
a real UDP socket, so datagrams travel through discord.py's SocketReader
thread into the receive layer, and the websocket hook is fed the JSON
messages Discord sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.voice_state import ConnectionFlowState

from bot.voice.client import RECEIVE_BUFFER_BYTES, RecordingVoiceClient, enlarge_receive_buffer

from .packets import AES_GCM, XCHACHA, voice_datagram
from .sink import ListSink

GUILD_ID, CHANNEL_ID = 1111, 2222


class _Channel:
    """The few attributes VoiceClient reads from a voice channel."""

    id = CHANNEL_ID
    guild = discord.Object(GUILD_ID)

    def _get_voice_client_key(self) -> tuple[int, str]:
        return GUILD_ID, "guild_id"


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def connected_voice() -> AsyncIterator[tuple[RecordingVoiceClient, socket.socket, bytes]]:
    """A RecordingVoiceClient whose connection state is 'connected' on a real local UDP socket."""
    async with discord.Client(intents=discord.Intents.none()) as client:
        vc = RecordingVoiceClient(client, _Channel())
        state = vc._connection
        key = os.urandom(32)
        state.mode = XCHACHA
        state.secret_key = list(key)
        state._create_socket()
        state.socket.bind(("127.0.0.1", 0))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.connect(state.socket.getsockname())
        state.state = ConnectionFlowState.connected
        try:
            yield vc, sender, key
        finally:
            vc.cleanup()
            state._socket_reader.stop()
            state.socket.close()
            sender.close()


async def _speaking(vc: RecordingVoiceClient, ssrc: int, user_id: int) -> None:
    await vc._connection.hook(None, {"op": 5, "d": {"user_id": str(user_id), "ssrc": ssrc, "speaking": 1}})


def test_records_over_udp_through_the_socket_reader() -> None:
    asyncio.run(_records_over_udp_through_the_socket_reader())


async def _records_over_udp_through_the_socket_reader() -> None:
    async with connected_voice() as (vc, sender, key):
        sink = ListSink()
        await _speaking(vc, 100, 7)  # known before recording starts
        receiver = vc.start_recording(sink, should_record=lambda user_id: user_id != 9)
        assert vc.is_recording()
        await _speaking(vc, 300, 9)
        for seq in range(20):
            sender.send(voice_datagram(XCHACHA, key, b"seven%d" % seq, sequence=seq, timestamp=960 * seq, ssrc=100))
            sender.send(voice_datagram(XCHACHA, key, b"eight%d" % seq, sequence=seq, timestamp=960 * seq, ssrc=200))
            sender.send(voice_datagram(XCHACHA, key, b"nine", sequence=seq, timestamp=0, ssrc=300))
        await _until(lambda: receiver.stats().datagrams == 60)
        assert receiver.stats().held == 20  # ssrc 200 has no SPEAKING yet
        await _speaking(vc, 200, 8)  # SPEAKING arrives late
        sender.send(voice_datagram(XCHACHA, key, b"eight20", sequence=20, timestamp=0, ssrc=200))
        await _until(lambda: receiver.stats().accepted == 41)

        stats = vc.stop_recording()
        assert not vc.is_recording()
        assert stats.receive.excluded == 20
        assert (stats.engine.received, stats.engine.dropped) == (41, 0)  # the sink wrote 41, refused none
        by_user: dict[int, list[bytes]] = {}
        for user_id, packet in sink.packets:
            by_user.setdefault(user_id, []).append(packet.opus)
        assert by_user[7] == [b"seven%d" % s for s in range(20)]
        assert by_user[8] == [b"eight%d" % s for s in range(21)]
        assert 9 not in by_user


def test_session_description_refreshes_the_key() -> None:
    asyncio.run(_session_description_refreshes_the_key())


async def _session_description_refreshes_the_key() -> None:
    async with connected_voice() as (vc, sender, key):
        sink = ListSink()
        receiver = vc.start_recording(sink)
        await _speaking(vc, 100, 7)
        new_key = os.urandom(32)
        await vc._connection.hook(None, {"op": 4, "d": {"mode": AES_GCM, "secret_key": list(new_key), "dave_protocol_version": 0}})
        sender.send(voice_datagram(XCHACHA, key, b"old key", sequence=1, timestamp=0, ssrc=100))
        sender.send(voice_datagram(AES_GCM, new_key, b"new key", sequence=2, timestamp=0, ssrc=100))
        await _until(lambda: receiver.stats().datagrams == 2)
        assert [p.opus for _, p in sink.packets] == [b"new key"]
        assert receiver.stats().auth_failed == 1


def test_client_disconnect_unmaps_and_bad_messages_do_not_raise() -> None:
    asyncio.run(_client_disconnect_unmaps_and_bad_messages_do_not_raise())


async def _client_disconnect_unmaps_and_bad_messages_do_not_raise() -> None:
    async with connected_voice() as (vc, sender, key):
        receiver = vc.start_recording(ListSink())
        await _speaking(vc, 100, 7)
        await vc._connection.hook(None, {"op": 13, "d": {"user_id": "7"}})
        await vc._connection.hook(None, {"op": 5, "d": {"user_id": "x", "ssrc": None}})  # swallowed, logged
        await vc._connection.hook(None, {"op": 4, "d": {"mode": "xsalsa20_poly1305", "secret_key": [0] * 32}})
        sender.send(voice_datagram(XCHACHA, key, b"after leave", sequence=1, timestamp=0, ssrc=100))
        # The datagram is counted on arrival and held a moment later: wait for the hold.
        await _until(lambda: receiver.stats().held == 1)  # old key kept; SSRC unmapped again
        assert receiver.stats().datagrams == 1


def test_start_recording_refuses_twice_and_when_disconnected() -> None:
    asyncio.run(_start_recording_refuses_twice_and_when_disconnected())


async def _start_recording_refuses_twice_and_when_disconnected() -> None:
    async with connected_voice() as (vc, sender, key):
        vc.start_recording(ListSink())
        with pytest.raises(discord.ClientException, match="Already recording"):
            vc.start_recording(ListSink())
        vc.stop_recording()
        with pytest.raises(discord.ClientException, match="Not recording"):
            vc.stop_recording()
        vc._connection.state = ConnectionFlowState.disconnected
        with pytest.raises(discord.ClientException, match="Not connected"):
            vc.start_recording(ListSink())


def test_dead_poller_is_surfaced() -> None:
    asyncio.run(_dead_poller_is_surfaced())


async def _dead_poller_is_surfaced() -> None:
    async with connected_voice() as (vc, sender, key):
        seen: asyncio.Queue[tuple[Any, BaseException]] = asyncio.Queue()

        @vc.client.event
        async def on_voice_receive_error(voice_client: Any, error: BaseException) -> None:
            await seen.put((voice_client, error))

        async def poller() -> None:
            # what discord.py's poller does when davey rejects an op 27
            raise ValueError("Failed to process proposals")

        vc._connection._runner = asyncio.get_running_loop().create_task(poller())
        vc._watchdog.start()
        error = await asyncio.wait_for(vc.wait_for_receive_error(), timeout=10)
        assert isinstance(error, ValueError) and vc.receive_error is error
        voice_client, dispatched = await asyncio.wait_for(seen.get(), timeout=10)
        assert voice_client is vc and dispatched is error


def test_cancelled_poller_is_skipped_and_a_replaced_one_still_watched() -> None:
    asyncio.run(_cancelled_poller_is_skipped_and_a_replaced_one_still_watched())


async def _cancelled_poller_is_skipped_and_a_replaced_one_still_watched() -> None:
    async with connected_voice() as (vc, sender, key):
        loop = asyncio.get_running_loop()
        runner = loop.create_task(asyncio.sleep(3600))
        vc._connection._runner = runner
        vc._watchdog.start()
        runner.cancel()  # discord.py cancels its poller on moves and soft disconnects
        with contextlib.suppress(asyncio.CancelledError):
            await runner

        async def poller() -> None:
            raise RuntimeError("second poller died")

        vc._connection._runner = loop.create_task(poller())
        error = await asyncio.wait_for(vc.wait_for_receive_error(), timeout=10)
        assert str(error) == "second poller died"


def test_receive_buffer_is_as_large_as_the_kernel_allows() -> None:
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        granted = enlarge_receive_buffer(sock)
        assert granted == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    # Without privilege the kernel caps the request at rmem_max; with it, it grants it all.
    assert granted >= min(RECEIVE_BUFFER_BYTES, rmem_max)
    assert granted >= default
