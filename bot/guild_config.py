"""Each server's settings as the bot applies them: what the server chose, within
the operator's limits, else the operator's defaults.

:class:`GuildSettings` is what the rest of the bot reads (who may record, how
long recordings are kept, the default download format, whether the stop
summary attaches files, autorecord). :class:`GuildConfig` reads and changes
them; a change that breaks a limit raises :class:`SettingRefused`, whose
``str`` is the one line to show the user.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from bot.config import DOWNLOAD_FORMATS, Settings
from bot.storage import AsyncRecordingStore, StoredGuildSettings
from bot.units import days

__all__ = ["AutorecordSettings", "GuildConfig", "GuildSettings", "SettingRefused", "parse_retention"]

_log = logging.getLogger(__name__)

#: Most humans an autorecord threshold can ask for (a voice channel holds at most 99).
MAX_MIN_MEMBERS = 99


class SettingRefused(Exception):
    """A value a server may not set; ``str`` is one line fit for users."""


@dataclasses.dataclass(frozen=True, slots=True)
class AutorecordSettings:
    """When the bot records a server's voice channels by itself."""

    #: Voice or stage channels watched; empty: autorecord is off.
    channel_ids: frozenset[int] = frozenset()
    #: Humans (bots do not count) in a watched channel that start a recording; None: count alone never does.
    min_members: int | None = None
    #: A member with one of these roles joining a watched channel starts a recording.
    trigger_role_ids: frozenset[int] = frozenset()
    #: The text channel told of each autorecording's start and end; None: only the voice channel's chat.
    post_channel_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GuildSettings:
    """One server's settings in force (its choices within the operator's limits)."""

    guild_id: int
    #: Roles whose members may record besides Manage Server; empty: the operator's rule
    #: (Manage Server or RECORDER_ROLE).
    recorder_role_ids: frozenset[int]
    #: Days a finished recording and its link are kept; None: forever.
    retention_days: float | None
    #: Whether the server chose the retention (else it is the operator's).
    retention_chosen: bool
    #: Default download format: one of :data:`bot.config.DOWNLOAD_FORMATS`.
    download_format: str
    #: Whether the stop summary attaches the recording's files.
    attach_files: bool
    autorecord: AutorecordSettings


def parse_retention(text: str, operator_days: float | None) -> float | None:
    """A server's retention typed by a user: days, or ``forever``; None for forever.

    Raises :class:`SettingRefused` for anything not a positive number, or
    longer than the operator keeps recordings (``forever`` only when the
    operator keeps them forever).
    """
    value = text.strip().casefold()
    limit = "forever" if operator_days is None else days(operator_days)
    if value == "forever":
        if operator_days is not None:
            raise SettingRefused(f"This bot keeps recordings at most {limit}, so not forever.")
        return None
    try:
        chosen = float(value.removesuffix("days").removesuffix("day").strip())
    except ValueError:
        raise SettingRefused(f"Retention is a number of days or `forever`, not `{text.strip()[:40]}`.") from None
    if not (math.isfinite(chosen) and chosen > 0):
        raise SettingRefused("Retention must be more than 0 days.")
    if operator_days is not None and chosen > operator_days:
        raise SettingRefused(f"This bot keeps recordings at most {limit}; choose that or less.")
    if chosen > 3650:
        raise SettingRefused("Retention is at most 3650 days (or `forever`).")
    return chosen


class GuildConfig:
    """Every server's settings: read through a cache (voice events ask often), written through the index.

    The cache is safe because a server's commands and voice events all reach the
    one process that runs its shard.
    """

    def __init__(self, store: AsyncRecordingStore, operator: Settings) -> None:
        self._store = store
        self.operator = operator
        self._stored: dict[int, StoredGuildSettings] = {}

    async def get(self, guild_id: int) -> GuildSettings:
        """The server's settings in force."""
        return self.resolve(await self.stored(guild_id))

    async def stored(self, guild_id: int) -> StoredGuildSettings:
        """What the server chose (None fields: the operator's defaults)."""
        stored = self._stored.get(guild_id)
        if stored is None:
            stored = self._stored[guild_id] = await self._store.guild_settings(guild_id)
        return stored

    def cached(self, guild_id: int) -> GuildSettings | None:
        """The settings if already read once (for code that cannot wait), else None."""
        stored = self._stored.get(guild_id)
        return None if stored is None else self.resolve(stored)

    async def change(self, guild_id: int, **changes: object) -> GuildSettings:
        """Store ``changes`` (fields of :class:`StoredGuildSettings`) and return the settings in force.

        Values must be checked already (:func:`parse_retention`, the command's choices).
        """
        stored = dataclasses.replace(await self.stored(guild_id), **changes)  # type: ignore[arg-type]
        if stored.download_format is not None and stored.download_format not in DOWNLOAD_FORMATS:
            raise SettingRefused(f"The download format is one of {', '.join(DOWNLOAD_FORMATS)}.")
        await self._store.put_guild_settings(stored)
        self._stored[guild_id] = stored
        _log.info("guild %s changed its settings: %s", guild_id, ", ".join(sorted(changes)))
        return self.resolve(stored)

    def resolve(self, stored: StoredGuildSettings) -> GuildSettings:
        """``stored`` within the operator's limits, defaults filled in."""
        operator = self.operator
        retention = operator.retention_days
        if stored.retention_days is not None:
            retention = stored.retention_days if retention is None else min(stored.retention_days, retention)
        return GuildSettings(
            guild_id=stored.guild_id,
            recorder_role_ids=stored.recorder_role_ids,
            retention_days=retention,
            retention_chosen=stored.retention_days is not None,
            download_format=stored.download_format or operator.download_format,
            attach_files=operator.attach_files if stored.attach_files is None else stored.attach_files,
            autorecord=AutorecordSettings(
                channel_ids=stored.autorecord_channel_ids,
                min_members=stored.autorecord_min_members,
                trigger_role_ids=stored.autorecord_trigger_role_ids,
                post_channel_id=stored.autorecord_post_channel_id,
            ),
        )
