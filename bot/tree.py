"""A command tree that knows which commands are still running.

Shutdown (SIGTERM) waits for them, so a `/record stop` that is finalizing or
sending its files is answered instead of being cut off mid-request.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands

__all__ = ["TrackedCommandTree"]

_log = logging.getLogger(__name__)


class TrackedCommandTree(app_commands.CommandTree):
    """`CommandTree` that counts running commands; call :meth:`finished` when one ends."""

    def __init__(self, client: discord.Client) -> None:
        super().__init__(client)
        self._running: set[int] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Runs before every command: mark it running (never refuses)."""
        self._running.add(interaction.id)
        self._idle.clear()
        return True

    def finished(self, interaction: discord.Interaction) -> None:
        """A command completed or failed."""
        self._running.discard(interaction.id)
        if not self._running:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no command runs, at most `timeout` seconds; False if some still do."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            _log.warning("%d command(s) still running at shutdown", len(self._running))
            return False
        return True
