"""What Discord's ``GET /gateway/bot`` tells a process before it connects: how many
shards the bot runs, and how many of them may IDENTIFY at once (``max_concurrency``)."""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
import discord

__all__ = ["GatewayPlan", "fetch_gateway_plan"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayPlan:
    """The shard count this process uses and Discord's IDENTIFY concurrency."""

    shard_count: int
    max_concurrency: int


async def fetch_gateway_plan(client: discord.AutoShardedClient, shard_count: int | None) -> GatewayPlan:
    """Ask Discord once (``shard_count`` None: take its recommended count, as discord.py would).

    ``client.http.get_bot_gateway`` is what discord.py 2.7's own
    ``fetch_session_start_limits`` and ``launch_shards`` call; one request gives both
    figures. When the count is set and Discord does not answer, ``max_concurrency`` is
    taken as 1 (every bot has at least that); without a count the error stands, as it
    would in discord.py.
    """
    try:
        recommended, _url, limits = await client.http.get_bot_gateway()
    except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
        if shard_count is None:
            raise
        _log.warning("could not ask Discord for its IDENTIFY concurrency (%s); identifying one shard per 5 s",
                     type(exc).__name__)
        return GatewayPlan(shard_count, 1)
    return GatewayPlan(shard_count if shard_count is not None else recommended,
                       max(1, int(limits.get("max_concurrency", 1))))
