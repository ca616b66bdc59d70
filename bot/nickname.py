"""The REC mark at the front of the bot's nickname while it records in a guild.

The mark is put on when a recording starts and taken off when it stops. A
process that dies while recording cannot take it off, so the next start
clears marks it finds on guilds where nothing records (:func:`clear_stale_mark`),
and putting a mark on never stacks a second one.
"""

from __future__ import annotations

import logging

import discord

__all__ = ["RECORDING_MARK", "NicknameMark", "clear_stale_mark"]

_log = logging.getLogger(__name__)

#: The mark shown at the front of the bot's nickname while it records.
RECORDING_MARK = "\N{LARGE RED CIRCLE} REC"
#: Discord's nickname length limit.
_NICK_MAX = 32


def _unmarked(member: discord.Member) -> str | None:
    """The member's nickname without any REC mark in front; None when that leaves
    only their account name (they had no nickname of their own)."""
    nick = member.nick
    while nick is not None and nick.startswith(RECORDING_MARK):
        nick = nick[len(RECORDING_MARK):].lstrip() or None
    return None if nick == member.name else nick


class NicknameMark:
    """The mark of one recording in ``guild``: :meth:`put_on`, then :meth:`take_off`."""

    __slots__ = ("_guild", "_previous", "_marked")

    def __init__(self, guild: discord.Guild) -> None:
        self._guild = guild
        self._previous: str | None = None
        self._marked = False

    async def put_on(self) -> None:
        """Show the mark, when the bot may change its nickname; a refusal is logged."""
        me = self._guild.me
        if me is None or not me.guild_permissions.change_nickname:
            return
        self._previous = _unmarked(me)
        name = f"{RECORDING_MARK} {self._previous or me.name}"[:_NICK_MAX]
        try:
            await me.edit(nick=name, reason="recording started")
            self._marked = True
        except discord.HTTPException as exc:
            _log.info("could not mark the nickname in guild %s: %s", self._guild.id, exc)

    async def take_off(self) -> None:
        """Restore the nickname from before :meth:`put_on`; a refusal is logged."""
        me = self._guild.me
        if not self._marked or me is None:
            return
        try:
            await me.edit(nick=self._previous, reason="recording stopped")
        except discord.HTTPException as exc:
            _log.info("could not restore the nickname in guild %s: %s", self._guild.id, exc)


async def clear_stale_mark(guild: discord.Guild) -> None:
    """Take off a mark a dead process left in ``guild`` (call only where nothing records)."""
    me = guild.me
    if me is None or me.nick is None or not me.nick.startswith(RECORDING_MARK):
        return
    try:
        await me.edit(nick=_unmarked(me), reason="no recording is running")
        _log.info("cleared a REC mark left in guild %s", guild.id)
    except discord.HTTPException as exc:
        _log.info("could not clear the REC mark in guild %s: %s", guild.id, exc)
