"""A command tree that knows which commands are still running, and answers failures.

Shutdown (SIGTERM) waits for running commands, so a `/record stop` that is
finalizing or sending its files is answered instead of being cut off
mid-request. A command that fails tells its user so in one line (the error
goes to the log, never to Discord: it may name paths).
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands

from bot.storage import IndexUnavailable

__all__ = ["INDEX_UNAVAILABLE", "TrackedCommandTree"]

#: What a command that needed the index says while the index cannot be reached (PostgreSQL away).
INDEX_UNAVAILABLE = "The bot's database cannot be reached right now, so this was not done; try again in a minute."

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

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """A command failed: log it, tell the user, and count it as ended."""
        try:
            await _report_command_error(interaction, error)
        finally:
            self.finished(interaction)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no command runs, at most `timeout` seconds; False if some still do."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            _log.warning("%d command(s) still running at shutdown", len(self._running))
            return False
        return True


async def _report_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    if isinstance(error, app_commands.CheckFailure) and interaction.response.is_done():
        return  # a refused check (RecordingsGroup.interaction_check) has already told the user why
    name = interaction.command.qualified_name if interaction.command else "?"
    cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(cause, IndexUnavailable):  # a known outage: its one line is the whole story
        _log.warning("command /%s failed: %s", name, cause)
        text = INDEX_UNAVAILABLE
    else:
        _log.error("command /%s failed", name, exc_info=error)
        text = "Something went wrong on the bot's side; the error was logged."
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        pass  # the interaction expired; the log has the error
