"""Application commands: what the bot registered, and the INTERACTION_CREATE
payloads the fake sends when a test "types" a slash command.

Options are typed the way Discord types them, from the schema the bot
registered: a subcommand is an option of type 1 with nested options (inside a
type-2 group when the subcommand name has two words), channels (type 7), users
(6) and roles (8) come with their `resolved` objects.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from .state import Guild, World, snowflake

_log = logging.getLogger(__name__)

OPT_SUB_COMMAND = 1
OPT_SUB_COMMAND_GROUP = 2
OPT_STRING = 3
OPT_INTEGER = 4
OPT_BOOLEAN = 5
OPT_USER = 6
OPT_CHANNEL = 7
OPT_ROLE = 8
OPT_NUMBER = 10

#: Interaction type of a slash command.
INTERACTION_APPLICATION_COMMAND = 2


class CommandRegistry:
    """Application commands as registered through PUT (bulk overwrite)."""

    def __init__(self) -> None:
        self._global: dict[int, list[dict[str, Any]]] = {}
        self._guild: dict[tuple[int, int], list[dict[str, Any]]] = {}
        #: Every bulk overwrite received, in order: (guild id or None for global, command names).
        self.overwrites: list[tuple[int | None, list[str]]] = []

    def overwrite(self, application_id: int, guild_id: int | None,
                  commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the global (guild_id None) or per-guild command list; return it
        with ids and the fields Discord fills in."""
        stored = []
        for command in commands:
            full = copy.deepcopy(command)
            full.setdefault("type", 1)
            full.setdefault("description", "")
            full.setdefault("options", [])
            full.setdefault("default_member_permissions", None)
            full.setdefault("nsfw", False)
            full.update(id=str(snowflake()), application_id=str(application_id), version=str(snowflake()))
            if guild_id is not None:
                full["guild_id"] = str(guild_id)
            stored.append(full)
        self.overwrites.append((guild_id, [c["name"] for c in stored]))
        if guild_id is None:
            self._global[application_id] = stored
        else:
            self._guild[(application_id, guild_id)] = stored
        _log.info("registered %d %s commands: %s", len(stored),
                  "global" if guild_id is None else "guild", [c["name"] for c in stored])
        return copy.deepcopy(stored)

    def list(self, application_id: int, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The registered commands (a copy)."""
        source = self._global.get(application_id, []) if guild_id is None else \
            self._guild.get((application_id, guild_id), [])
        return copy.deepcopy(source)

    def find(self, application_id: int, guild_id: int, name: str) -> dict[str, Any] | None:
        """The command `name` as a member of `guild_id` would see it (guild first)."""
        for command in self._guild.get((application_id, guild_id), []) + self._global.get(application_id, []):
            if command["name"] == name and command["type"] == 1:
                return command
        return None


def _resolve_value(world: World, guild: Guild, option: dict[str, Any], value: Any,
                   resolved: dict[str, dict[str, Any]], channel_permissions: int) -> Any:
    """Convert a test-supplied value to the wire form of `option` and fill `resolved`."""
    kind = option["type"]
    if kind == OPT_STRING:
        return str(value)
    if kind == OPT_INTEGER:
        return int(value)
    if kind == OPT_NUMBER:
        return float(value)
    if kind == OPT_BOOLEAN:
        return bool(value)
    if kind == OPT_CHANNEL:
        channel = guild.channels[int(value)]
        resolved.setdefault("channels", {})[str(channel.id)] = {
            **channel.payload(), "permissions": str(channel_permissions)}
        return str(channel.id)
    if kind == OPT_USER:
        user = world.users[int(value)]
        resolved.setdefault("users", {})[str(user.id)] = user.payload()
        member = guild.members.get(user.id)
        if member is not None:
            data = member.payload()
            del data["user"]
            data["permissions"] = str(guild.member_permissions(user.id))
            resolved.setdefault("members", {})[str(user.id)] = data
        return str(user.id)
    if kind == OPT_ROLE:
        role = guild.roles[int(value)]
        resolved.setdefault("roles", {})[str(role.id)] = role.payload()
        return str(role.id)
    raise ValueError(f"option {option['name']!r} has type {kind}, which the fake cannot send")


def _typed_options(world: World, guild: Guild, schema: list[dict[str, Any]], values: dict[str, Any],
                   resolved: dict[str, dict[str, Any]], permissions: int) -> list[dict[str, Any]]:
    by_name = {o["name"]: o for o in schema}
    typed = []
    for name, value in values.items():
        option = by_name.get(name)
        if option is None:
            raise ValueError(f"unknown option {name!r}; the command has {sorted(by_name)}")
        typed.append({"name": name, "type": option["type"],
                      "value": _resolve_value(world, guild, option, value, resolved, permissions)})
    missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
    if missing:
        raise ValueError(f"required options missing: {missing}")
    return typed


def build_command_data(world: World, guild: Guild, command: dict[str, Any], subcommand: str | None,
                       options: dict[str, Any], permissions: int) -> dict[str, Any]:
    """The `data` object of a slash command interaction.

    `subcommand` is "start" for `/record start`, or "group sub" for a subcommand
    inside a group.
    """
    resolved: dict[str, dict[str, Any]] = {}
    schema = command.get("options", [])
    if subcommand is None:
        if any(o["type"] in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP) for o in schema):
            raise ValueError(f"/{command['name']} needs a subcommand")
        typed = _typed_options(world, guild, schema, options, resolved, permissions)
    else:
        path = subcommand.split()
        typed_outer: list[dict[str, Any]] = []
        container = typed_outer
        for depth, part in enumerate(path):
            wanted = OPT_SUB_COMMAND if depth == len(path) - 1 else OPT_SUB_COMMAND_GROUP
            found = next((o for o in schema if o["name"] == part and o["type"] == wanted), None)
            if found is None:
                raise ValueError(f"/{command['name']} has no subcommand {subcommand!r}")
            node: dict[str, Any] = {"name": part, "type": wanted, "options": []}
            container.append(node)
            container = node["options"]
            schema = found.get("options", [])
        container.extend(_typed_options(world, guild, schema, options, resolved, permissions))
        typed = typed_outer
    data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": 1, "options": typed}
    if resolved:
        data["resolved"] = resolved
    if "guild_id" in command:
        # discord.py looks the command up per guild exactly when this is present.
        data["guild_id"] = command["guild_id"]
    return data


def build_interaction(world: World, guild: Guild, *, application_id: int, bot_user_id: int,
                      channel_id: int, user_id: int, data: dict[str, Any],
                      interaction_id: int, token: str) -> dict[str, Any]:
    """The INTERACTION_CREATE payload for a slash command invoked by `user_id`."""
    member = guild.members[user_id]
    member_data = member.payload()
    user_permissions = guild.member_permissions(user_id)
    member_data["permissions"] = str(user_permissions)
    channel = guild.channels[channel_id]
    return {
        "id": str(interaction_id), "application_id": str(application_id),
        "type": INTERACTION_APPLICATION_COMMAND, "data": data,
        "guild_id": str(guild.id), "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
        "channel_id": str(channel_id),
        "channel": {**channel.payload(), "permissions": str(user_permissions)},
        "member": member_data, "token": token, "version": 1,
        "app_permissions": str(guild.member_permissions(bot_user_id)),
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
        "attachment_size_limit": guild.upload_limit,
    }
