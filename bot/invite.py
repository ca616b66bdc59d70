"""The invite link, with exactly the permissions the bot needs and why."""

from __future__ import annotations

import discord

__all__ = ["PERMISSION_REASONS", "required_permissions", "invite_url"]

#: Each permission the bot asks for, with the reason given to server owners.
PERMISSION_REASONS: dict[str, str] = {
    "view_channel": "see the voice channel it records and the text channel it reports to",
    "connect": "join the voice channel to receive the audio it records",
    "send_messages": "announce recordings in the channel and post stop summaries",
    "attach_files": "attach the ZIP of per-speaker WAV files when it fits the upload limit",
    "change_nickname": "show a recording mark in its nickname while it records",
}

_SCOPES = ("bot", "applications.commands")


def required_permissions() -> discord.Permissions:
    """The permission set named in PERMISSION_REASONS."""
    return discord.Permissions(**{name: True for name in PERMISSION_REASONS})


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds the bot with its slash commands and permissions."""
    return discord.utils.oauth_url(application_id, permissions=required_permissions(), scopes=_SCOPES)
