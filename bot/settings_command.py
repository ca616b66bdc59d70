"""``/settings``: a server's own settings, shown and changed by members with Manage Server."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands

from bot import units
from bot.config import Settings
from bot.guild_config import MAX_MIN_MEMBERS, GuildConfig, GuildSettings, SettingRefused, parse_retention
from bot.summary import plain

__all__ = ["SettingsGroup", "settings_text"]

_log = logging.getLogger(__name__)

_FORMATS = Literal["wav", "flac", "ogg", "mp3", "default"]


def _roles(guild: discord.Guild, role_ids: frozenset[int]) -> str:
    names = sorted(f"**{plain(role.name)}**" for rid in role_ids if (role := guild.get_role(rid)) is not None)
    return ", ".join(names) if names else "none"


def _channels(guild: discord.Guild, channel_ids: frozenset[int]) -> str:
    found = [channel.mention for cid in sorted(channel_ids) if (channel := guild.get_channel(cid)) is not None]
    return ", ".join(found) if found else "none"


def settings_text(guild: discord.Guild, current: GuildSettings, operator: Settings) -> str:
    """The server's settings in force, one per line, naming where each comes from."""
    if current.recorder_role_ids:
        recorders = f"Manage Server or {_roles(guild, current.recorder_role_ids)}"
    elif operator.recorder_role:
        recorders = f"Manage Server or **{plain(operator.recorder_role)}** (the bot's default)"
    else:
        recorders = "Manage Server (the bot's default)"
    kept = "forever" if current.retention_days is None else units.days(current.retention_days)
    limit = "forever" if operator.retention_days is None else units.days(operator.retention_days)
    retention = f"{kept}" + ("" if current.retention_chosen else " (the bot's default)") + f"; at most {limit}"
    auto = current.autorecord
    if auto.channel_ids:
        starts = []
        if auto.min_members:
            starts.append(f"{auto.min_members} member{'s' if auto.min_members > 1 else ''} (bots do not count)")
        if auto.trigger_role_ids:
            starts.append(f"a member with {_roles(guild, auto.trigger_role_ids)} joins")
        post = guild.get_channel(auto.post_channel_id) if auto.post_channel_id else None
        autorecord = (f"{_channels(guild, auto.channel_ids)}, starts when "
                      f"{' or '.join(starts) if starts else 'nothing (set a member count or a trigger role)'}; "
                      f"posts in {post.mention if post is not None else 'no text channel'}")
    else:
        autorecord = "off"
    return "\n".join([
        "**Settings of this server**",
        f"Who may record: {recorders}",
        f"Recordings kept: {retention}",
        f"Default download format: {current.download_format}",
        f"Stop summary attaches the files: {'yes' if current.attach_files else 'no'}",
        f"Autorecord: {autorecord}",
    ])


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsGroup(app_commands.Group):
    """Show and change this server's settings (Manage Server only)."""

    def __init__(self, settings: Settings, config: GuildConfig) -> None:
        super().__init__(name="settings", description="This server's recording settings (Manage Server only)")
        self.settings = settings
        self.config = config

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Only members with Manage Server, whatever the server's integration settings say."""
        if interaction.permissions.manage_guild:
            return True
        await interaction.response.send_message("Only members with Manage Server may see or change the settings.",
                                                ephemeral=True)
        return False

    async def _change(self, interaction: discord.Interaction, **changes: object) -> None:
        """Store the changes and show the settings now in force; a refused value gets its one line."""
        assert interaction.guild is not None
        try:
            current = await self.config.change(interaction.guild.id, **changes)
        except SettingRefused as refused:
            await interaction.response.send_message(str(refused), ephemeral=True)
            return
        await interaction.response.send_message(settings_text(interaction.guild, current, self.settings),
                                                ephemeral=True)

    async def _refuse(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="show", description="Show this server's settings")
    async def show(self, interaction: discord.Interaction) -> None:
        """Every setting in force and where it comes from."""
        assert interaction.guild is not None
        current = await self.config.get(interaction.guild.id)
        await interaction.response.send_message(settings_text(interaction.guild, current, self.settings),
                                                ephemeral=True)

    @app_commands.command(name="recorder-role", description="Let a role start and stop recordings (or no longer)")
    @app_commands.describe(role="The role", remove="Take the right away from this role instead")
    async def recorder_role(self, interaction: discord.Interaction, role: discord.Role, remove: bool = False) -> None:
        """Add or remove a recorder role; with none, the bot's default rule applies."""
        assert interaction.guild is not None
        roles = (await self.config.stored(interaction.guild.id)).recorder_role_ids
        await self._change(interaction, recorder_role_ids=roles - {role.id} if remove else roles | {role.id})

    @app_commands.command(name="retention", description="How long recordings are kept after they end")
    @app_commands.describe(days="A number of days, `forever`, or `default` for the bot's own")
    async def retention(self, interaction: discord.Interaction, days: str) -> None:
        """Never longer than the bot's operator keeps recordings."""
        if days.strip().casefold() == "default":
            await self._change(interaction, retention_days=None)
            return
        try:
            chosen = parse_retention(days, self.settings.retention_days)
        except SettingRefused as refused:
            await self._refuse(interaction, str(refused))
            return
        # Forever is only allowed when the operator keeps recordings forever: the operator's default then.
        await self._change(interaction, retention_days=chosen)

    @app_commands.command(name="format", description="The default download format of this server's recordings")
    @app_commands.describe(value="wav, flac, ogg, mp3, or default for the bot's own")
    async def format_(self, interaction: discord.Interaction, value: _FORMATS) -> None:
        """Store the server's default download format."""
        await self._change(interaction, download_format=None if value == "default" else value)

    @app_commands.command(name="attach-files", description="Whether the stop summary attaches the recording's files")
    @app_commands.describe(value="Attach the files (when they fit) to the stop summary")
    async def attach_files(self, interaction: discord.Interaction, value: bool) -> None:
        """Store whether the stop summary attaches files."""
        await self._change(interaction, attach_files=value)

    @app_commands.command(name="autorecord", description="Record a voice channel by itself when people come")
    @app_commands.describe(channel="The voice or stage channel", remove="Stop recording this channel by itself")
    async def autorecord(self, interaction: discord.Interaction,
                         channel: discord.VoiceChannel | discord.StageChannel, remove: bool = False) -> None:
        """Add or remove an autorecord channel."""
        assert interaction.guild is not None
        ids = (await self.config.stored(interaction.guild.id)).autorecord_channel_ids
        await self._change(interaction, autorecord_channel_ids=ids - {channel.id} if remove else ids | {channel.id})

    @app_commands.command(name="autorecord-members",
                          description="Humans in an autorecord channel that start a recording (0: never by count)")
    @app_commands.describe(count=f"1 to {MAX_MIN_MEMBERS}; 0 to start only when a trigger role joins")
    async def autorecord_members(self, interaction: discord.Interaction, count: int) -> None:
        """Store the member threshold."""
        if not 0 <= count <= MAX_MIN_MEMBERS:
            await self._refuse(interaction, f"The member count is 0 to {MAX_MIN_MEMBERS}.")
            return
        await self._change(interaction, autorecord_min_members=count or None)

    @app_commands.command(name="autorecord-role",
                          description="A member with this role joining an autorecord channel starts a recording")
    @app_commands.describe(role="The trigger role", remove="No longer trigger on this role")
    async def autorecord_role(self, interaction: discord.Interaction, role: discord.Role,
                              remove: bool = False) -> None:
        """Add or remove a trigger role."""
        assert interaction.guild is not None
        roles = (await self.config.stored(interaction.guild.id)).autorecord_trigger_role_ids
        await self._change(interaction,
                           autorecord_trigger_role_ids=roles - {role.id} if remove else roles | {role.id})

    @app_commands.command(name="autorecord-post", description="The text channel told of autorecordings")
    @app_commands.describe(channel="Where autorecordings are announced, and their summaries posted")
    async def autorecord_post(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        """Store where autorecordings are announced."""
        assert interaction.guild is not None
        perms = channel.permissions_for(interaction.guild.me)
        if not (perms.view_channel and perms.send_messages):
            await self._refuse(interaction, f"I need the View Channel and Send Messages permissions in "
                                            f"{channel.mention}.")
            return
        await self._change(interaction, autorecord_post_channel_id=channel.id)
