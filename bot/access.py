"""Who may record in a server: Manage Server, or the server's recorder roles, or
(when the server named none) the operator's ``RECORDER_ROLE``; and whether the
bot itself can record a channel now."""

from __future__ import annotations

from pathlib import Path

import discord

from bot.storage import has_free_space
from bot.summary import plain

__all__ = ["bot_cannot_record", "may_record", "who_may_record"]


def may_record(member: discord.abc.User, permissions: discord.Permissions, operator_role: str | None,
               role_ids: frozenset[int]) -> bool:
    """Whether ``member`` (with guild ``permissions``) may start and stop recordings.

    ``role_ids`` are the server's recorder roles; when it has none, the operator's
    ``operator_role`` (a name or an id) counts instead.
    """
    if permissions.manage_guild:
        return True
    if not isinstance(member, discord.Member):
        return False
    if role_ids:
        return any(role.id in role_ids for role in member.roles)
    if operator_role is None:
        return False
    wanted = operator_role.casefold()
    return any(role.name.casefold() == wanted or str(role.id) == operator_role for role in member.roles)


def who_may_record(guild: discord.Guild, operator_role: str | None, role_ids: frozenset[int]) -> str:
    """``members with Manage Server or the **Recorder** role``, as the refusal and the start message say it."""
    if role_ids:
        names = sorted(plain(role.name) for rid in role_ids if (role := guild.get_role(rid)) is not None)
        if names:
            roles = ", ".join(f"**{name}**" for name in names)
            return f"members with Manage Server or the {roles} role{'s' if len(names) > 1 else ''}"
        return "members with Manage Server"
    if operator_role:
        return f"members with Manage Server or the **{operator_role}** role"
    return "members with Manage Server"


def bot_cannot_record(channel: discord.VoiceChannel | discord.StageChannel, recordings_dir: Path,
                      min_free_disk_mb: int) -> str | None:
    """Why the bot cannot record ``channel`` now (low disk, missing permissions), or None."""
    if not has_free_space(recordings_dir, min_free_disk_mb):
        return "The bot's disk is almost full, so it cannot record now. Tell the bot's operator."
    perms = channel.permissions_for(channel.guild.me)
    if not (perms.view_channel and perms.connect):
        return f"I need the View Channel and Connect permissions in {channel.mention}."
    return None
