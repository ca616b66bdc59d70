"""The voice connect flow sees a state change made just before it starts waiting.

discord.py handles the main gateway's answers to op 4 (VOICE_STATE_UPDATE,
VOICE_SERVER_UPDATE) in tasks of their own. When both were read while op 4 was
still being sent, those tasks ran after the connector had checked the flow state
but before its wait had begun: the change woke nobody and the connect timed out
after 30 s with both answers in hand (seen as "Timed out connecting to voice" in
end-to-end tests on a loaded machine). This reproduces that order exactly.
"""

from __future__ import annotations

import asyncio
import socket

import discord
from discord.voice_state import ConnectionFlowState

from bot.voice.discordpy import ReceivingConnectionState, SocketReaderBase


def _connection_state() -> ReceivingConnectionState:
    async def no_hook(ws: object, message: dict[str, object]) -> None:
        return None

    def keep(sock: socket.socket) -> socket.socket:
        return sock

    return ReceivingConnectionState(
        discord.Object(1),  # type: ignore[arg-type]
        hook=no_hook,  # type: ignore[arg-type]
        socket_reader=SocketReaderBase,
        adopt_socket=keep,
        on_websocket_connecting=lambda: None,
    )


async def _answers_handled_before_the_wait_begins() -> None:
    state = _connection_state()
    state.state = ConnectionFlowState.set_guild_voice_state
    loop = asyncio.get_running_loop()
    # Queued before the wait starts, as the gateway reader's handler tasks were.
    loop.call_soon(setattr, state, "state", ConnectionFlowState.got_voice_state_update)
    loop.call_soon(setattr, state, "state", ConnectionFlowState.got_both_voice_updates)
    await state._wait_for_state(ConnectionFlowState.got_both_voice_updates, timeout=10)
    assert state.state is ConnectionFlowState.got_both_voice_updates


def test_answers_handled_before_the_wait_begins_are_not_missed() -> None:
    asyncio.run(_answers_handled_before_the_wait_begins())


async def _still_times_out_when_nothing_comes() -> None:
    state = _connection_state()
    state.state = ConnectionFlowState.set_guild_voice_state
    loop = asyncio.get_running_loop()
    loop.call_soon(setattr, state, "state", ConnectionFlowState.got_voice_state_update)
    try:
        await state._wait_for_state(ConnectionFlowState.got_both_voice_updates, timeout=0.2)
    except TimeoutError:
        return
    raise AssertionError(f"returned in state {state.state.name} instead of timing out")


def test_a_wait_for_a_state_never_reached_still_times_out() -> None:
    asyncio.run(_still_times_out_when_nothing_comes())
