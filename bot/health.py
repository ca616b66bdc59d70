"""Whether the bot process is ready (``/healthz``): every gateway shard it runs is
connected, the recording index answers, and so does the object store (with ``STORAGE_URL``)."""

from __future__ import annotations

import discord

from bot.storage import AsyncRecordingStore
from bot.web.ops import store_problems
from bot.web.storecheck import ObjectStoreCheck

__all__ = ["bot_problems", "gateway_problems"]


def gateway_problems(client: discord.AutoShardedClient) -> list[str]:
    """Why the gateway is not usable right now: not logged in and READY yet, or a
    shard's websocket closed (while discord.py reconnects it, or for good)."""
    if not client.is_ready():
        return ["gateway: not connected yet"]
    return [f"gateway: shard {shard_id} is disconnected"
            for shard_id, shard in sorted(client.shards.items()) if shard.is_closed()]


async def bot_problems(client: discord.AutoShardedClient, store: AsyncRecordingStore,
                       objects: ObjectStoreCheck | None) -> list[str]:
    """Every reason the bot is not ready (empty: ready)."""
    return gateway_problems(client) + await store_problems(store, objects)
