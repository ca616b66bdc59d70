"""Notices when discord.py's voice websocket poller dies.

discord.py 2.7.1 runs the voice websocket in one task (the poller, see
:meth:`bot.voice.discordpy.ReceivingConnectionState.poller_task`) that handles
only connection-closed and timeout errors. Anything else raised while handling
a message (for instance davey rejecting an MLS proposal, op 27) ends the task
silently: heartbeats go on from their own thread, UDP audio keeps
flowing, but DAVE key changes are no longer processed and the recording decays
into decrypt failures. This watchdog turns that into one call of ``on_death``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

__all__ = ("PollerWatchdog",)


class PollerWatchdog:
    """Checks the connection's poller task every ``interval`` seconds.

    :param poller: returns the poller task (or ``None``); called on every
        check because a reconnect or move replaces the task.
    :param on_death: called once, on the event loop, with the exception that
        ended the poller.
    """

    __slots__ = ("_poller", "_on_death", "_interval", "_task")

    def __init__(self, poller: Callable[[], asyncio.Task[Any] | None], on_death: Callable[[BaseException], None], *,
                 interval: float = 0.5) -> None:
        self._poller = poller
        self._on_death = on_death
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (idempotent); must be called on the event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="voice poller watchdog")

    def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        while True:
            runner = self._poller()
            if runner is not None and runner.done() and not runner.cancelled():
                error = runner.exception()
                if error is not None:
                    self._on_death(error)
                    return
            await asyncio.sleep(self._interval)
