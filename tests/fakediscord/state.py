"""The loopback Discord's world: users, guilds, channels, roles, voice states.

Every part of the fake (REST, gateway, voice server, scenario) reads and
changes this one model, on the fake's own event loop. Changes that Discord
would announce are published to observers (the gateway turns them into
dispatches, the voice server into room membership).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

_log = logging.getLogger(__name__)

#: Discord's epoch (2015-01-01) in ms, for snowflakes that decode to real times.
_DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits used by the fake (discord.Permissions values).
PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_GUILD = 1 << 5
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_ATTACH_FILES = 1 << 15
PERM_CONNECT = 1 << 20
PERM_SPEAK = 1 << 21
PERM_CHANGE_NICKNAME = 1 << 26
PERM_USE_APPLICATION_COMMANDS = 1 << 31
#: What @everyone may do in the default scenario: see, talk, join voice.
EVERYONE_PERMISSIONS = (
    PERM_VIEW_CHANNEL | PERM_SEND_MESSAGES | PERM_ATTACH_FILES | PERM_CONNECT
    | PERM_SPEAK | PERM_CHANGE_NICKNAME | PERM_USE_APPLICATION_COMMANDS
)

CHANNEL_TEXT = 0
CHANNEL_VOICE = 2
#: A stage: speakers talk, the audience (suppressed voice states) listens. No DAVE on stages.
CHANNEL_STAGE = 13
#: Channel types people join by voice.
VOICE_CHANNEL_TYPES = (CHANNEL_VOICE, CHANNEL_STAGE)

_sequence = itertools.count(1)


def snowflake() -> int:
    """Return a new unique Discord-style id whose timestamp is now."""
    ms = int(time.time() * 1000) - _DISCORD_EPOCH_MS
    return (ms << 22) | (next(_sequence) & 0x3FFFFF)


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    def payload(self) -> dict[str, Any]:
        """The user object as Discord sends it."""
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name or self.username,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class Role:
    id: int
    name: str
    permissions: int = 0
    position: int = 0

    def payload(self) -> dict[str, Any]:
        """The role object as Discord sends it."""
        return {
            "id": str(self.id), "name": self.name, "permissions": str(self.permissions),
            "position": self.position, "color": 0, "hoist": False, "managed": False,
            "mentionable": False, "flags": 0,
        }


@dataclass
class Channel:
    id: int
    guild_id: int
    name: str
    type: int
    position: int = 0
    #: Permission overwrites as Discord sends them: ``{"id", "type" (0 role, 1 member), "allow", "deny"}``.
    overwrites: list[dict[str, Any]] = field(default_factory=list)

    def deny(self, user_id: int, permissions: int) -> None:
        """Deny `permissions` to one member in this channel (set before the bot connects)."""
        self.overwrites.append({"id": str(user_id), "type": 1, "allow": "0", "deny": str(permissions)})

    def payload(self) -> dict[str, Any]:
        """The channel object as Discord sends it."""
        data: dict[str, Any] = {
            "id": str(self.id), "guild_id": str(self.guild_id), "name": self.name,
            "type": self.type, "position": self.position, "permission_overwrites": list(self.overwrites),
            "parent_id": None, "nsfw": False,
        }
        if self.type in VOICE_CHANNEL_TYPES:
            data.update(bitrate=64000, user_limit=0, rtc_region=None)
        if self.type == CHANNEL_STAGE:
            data.update(topic=None)
        return data


@dataclass
class Member:
    user: User
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = "2026-01-01T00:00:00+00:00"

    def payload(self) -> dict[str, Any]:
        """The guild member object as Discord sends it."""
        return {
            "user": self.user.payload(), "roles": [str(r) for r in self.role_ids],
            "nick": self.nick, "joined_at": self.joined_at, "deaf": False, "mute": False,
            "flags": 0, "pending": False,
        }


@dataclass
class VoiceState:
    guild_id: int
    user_id: int
    channel_id: int | None
    session_id: str
    self_mute: bool = False
    self_deaf: bool = False
    #: On a stage: in the audience (Discord forwards none of their audio), not a speaker.
    suppress: bool = False

    def payload(self, member: Member | None) -> dict[str, Any]:
        """The voice state object; `member` is included because without the
        members intent discord.py drops voice states that lack it."""
        data: dict[str, Any] = {
            "guild_id": str(self.guild_id), "user_id": str(self.user_id),
            "channel_id": str(self.channel_id) if self.channel_id else None,
            "session_id": self.session_id, "deaf": False, "mute": False,
            "self_deaf": self.self_deaf, "self_mute": self.self_mute,
            "self_video": False, "suppress": self.suppress, "request_to_speak_timestamp": None,
        }
        if member is not None:
            data["member"] = member.payload()
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    channels: dict[int, Channel] = field(default_factory=dict)
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    #: Bytes; Discord's default upload limit is 10 MiB.
    upload_limit: int = 10 * 1024 * 1024

    def payload(self) -> dict[str, Any]:
        """The guild object as the REST API returns it (no channels or members)."""
        return {
            "id": str(self.id), "name": self.name, "owner_id": str(self.owner_id),
            "icon": None, "splash": None, "discovery_splash": None, "banner": None,
            "description": None, "features": [], "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0,
            "nsfw_level": 0, "premium_tier": 0, "afk_timeout": 300, "afk_channel_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "preferred_locale": "en-US",
            "roles": [r.payload() for r in self.roles.values()], "emojis": [], "stickers": [],
        }

    @property
    def everyone_role(self) -> Role:
        """The @everyone role shares the guild's id."""
        return self.roles[self.id]

    def member_permissions(self, user_id: int) -> int:
        """Guild-level permission bits of a member (owner and admins get all)."""
        if user_id == self.owner_id:
            return (1 << 53) - 1
        member = self.members[user_id]
        bits = self.everyone_role.permissions
        for role_id in member.role_ids:
            bits |= self.roles[role_id].permissions
        if bits & PERM_ADMINISTRATOR:
            return (1 << 53) - 1
        return bits


#: Observer signature: (event name, data). Events: "voice_state" (VoiceState,
#: with the previous channel id as data["before_channel_id"]), "member_update" (Member).
Observer = Callable[[str, dict[str, Any]], None]


class World:
    """All state of the loopback Discord. Use only on the fake's event loop."""

    def __init__(self) -> None:
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.voice_states: dict[tuple[int, int], VoiceState] = {}
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> None:
        """Call `observer(event, data)` on every published change."""
        self._observers.append(observer)

    def _publish(self, event: str, data: dict[str, Any]) -> None:
        for observer in list(self._observers):
            try:
                observer(event, data)
            except Exception:  # one broken observer must not hide the event from the rest
                _log.exception("observer %r failed on %s", observer, event)

    def add_user(self, username: str, *, bot: bool = False, user_id: int | None = None) -> User:
        """Create a user."""
        user = User(id=user_id or snowflake(), username=username, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, owner: User, *, guild_id: int | None = None) -> Guild:
        """Create a guild with its @everyone role, owned (and joined) by `owner`; `guild_id`
        chooses its id (and so its shard), else a new snowflake."""
        guild = Guild(id=guild_id or snowflake(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = Role(id=guild.id, name="@everyone", permissions=EVERYONE_PERMISSIONS)
        guild.members[owner.id] = Member(user=owner)
        self.guilds[guild.id] = guild
        return guild

    def add_channel(self, guild: Guild, name: str, type: int) -> Channel:
        """Create a text (0), voice (2) or stage (13) channel in `guild`."""
        channel = Channel(id=snowflake(), guild_id=guild.id, name=name, type=type,
                          position=len(guild.channels))
        guild.channels[channel.id] = channel
        return channel

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        """Create a role in `guild`."""
        role = Role(id=snowflake(), name=name, permissions=permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        return role

    def add_member(self, guild: Guild, user: User, role_ids: list[int] | None = None) -> Member:
        """Make `user` a member of `guild`."""
        member = Member(user=user, role_ids=list(role_ids or []))
        guild.members[user.id] = member
        return member

    def set_nick(self, guild_id: int, user_id: int, nick: str | None) -> Member:
        """Change a member's nickname and publish "member_update"."""
        member = self.guilds[guild_id].members[user_id]
        member.nick = nick
        self._publish("member_update", {"guild_id": guild_id, "member": member})
        return member

    def is_stage(self, guild_id: int, channel_id: int) -> bool:
        """Whether `channel_id` is a stage channel of `guild_id`."""
        channel = self.guilds[guild_id].channels.get(channel_id)
        return channel is not None and channel.type == CHANNEL_STAGE

    def set_suppress(self, guild_id: int, user_id: int, suppress: bool) -> VoiceState:
        """Move a user on a stage between the audience (True) and the speakers (False)."""
        state = self.voice_states[(guild_id, user_id)]
        return self.set_voice_state(guild_id, user_id, state.channel_id, self_mute=state.self_mute,
                                    self_deaf=state.self_deaf, suppress=suppress)

    def voice_channel_members(self, channel_id: int) -> list[int]:
        """User ids currently in voice channel `channel_id`."""
        return [vs.user_id for vs in self.voice_states.values() if vs.channel_id == channel_id]

    def set_voice_state(
        self, guild_id: int, user_id: int, channel_id: int | None, *,
        self_mute: bool = False, self_deaf: bool = False, new_session: bool = False,
        suppress: bool | None = None,
    ) -> VoiceState:
        """Move a user into a voice channel (None: out of voice) and publish "voice_state".

        A user keeps their session id while connected; joining anew, or from
        another client (``new_session``), starts a new one. On a stage a user
        joins the audience (``suppress``) as on Discord, and stays where they were
        while in it, unless `suppress` says otherwise.
        """
        key = (guild_id, user_id)
        previous = self.voice_states.get(key)
        before = previous.channel_id if previous else None
        kept = previous is not None and previous.channel_id is not None and not new_session
        session_id = previous.session_id if kept and previous is not None else f"{snowflake():x}"
        if suppress is None:
            channel = self.guilds[guild_id].channels.get(channel_id) if channel_id is not None else None
            staying = previous is not None and previous.channel_id == channel_id
            suppress = (previous.suppress if staying and previous is not None
                        else channel is not None and channel.type == CHANNEL_STAGE)
        state = VoiceState(guild_id, user_id, channel_id, session_id, self_mute, self_deaf, suppress)
        if channel_id is None:
            self.voice_states.pop(key, None)
        else:
            self.voice_states[key] = state
        self._publish("voice_state", {"state": state, "before_channel_id": before})
        return state
