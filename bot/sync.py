"""``voice-recorder-bot sync-commands``: register the bot's slash commands with Discord
once, over REST (no gateway, no voice), and say what was registered.

With several shard processes, each runs with ``SYNC_COMMANDS=no`` and an operator
(or a deploy step) runs this once per release instead of every process syncing at
every start.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import aiohttp
import discord

from bot.app import RecorderBot
from bot.config import Settings
from bot.endpoints import apply_endpoints, tls_connector
from bot.stores import Stores

__all__ = ["sync_commands"]

_log = logging.getLogger(__name__)


class _CommandSync(RecorderBot):
    """The bot with the very same command tree, whose login syncs it and does nothing else
    (discord.py's ``login`` runs :meth:`setup_hook`; :meth:`start` is never called)."""

    synced: list[str]

    async def setup_hook(self) -> None:
        """Add the commands and overwrite Discord's global list with them."""
        self.add_commands()
        self.synced = [command.name for command in await self.tree.sync()]


async def _sync(settings: Settings, stores: Stores) -> list[str]:
    apply_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    connector = tls_connector(str(settings.discord_ca_file) if settings.discord_ca_file else None)
    # It claims no shards (its setup_hook only syncs), so no other process can take any over.
    syncer = _CommandSync(settings, stores, connector=connector, stop=lambda: None)
    async with syncer:
        await syncer.login(settings.discord_token)
        return syncer.synced


def sync_commands(settings: Settings, stores: Stores) -> int:
    """Sync the global slash commands; print what was done; the exit code (errors: one line on stderr)."""
    try:
        names = asyncio.run(_sync(settings, stores))
    except discord.LoginFailure:
        print("error: DISCORD_TOKEN was rejected by Discord; check the token in the developer portal",
              file=sys.stderr)
        return 1
    except discord.HTTPException as exc:
        print(f"error: Discord refused the command sync: HTTP {exc.status} {exc.text or ''}".rstrip(),
              file=sys.stderr)
        return 1
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        print(f"error: cannot reach Discord: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"synced {len(names)} global slash commands with Discord: {', '.join('/' + n for n in names)}")
    return 0
