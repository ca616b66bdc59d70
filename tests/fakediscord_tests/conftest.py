"""Fixtures: a running FakeDiscord (no voice half) and discord.py aimed at it."""

from __future__ import annotations

from typing import Iterator

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from tests.fakediscord.server import FakeDiscord


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    """A fresh loopback Discord, REST and gateway only."""
    with FakeDiscord(voice=False) as server:
        yield server


@pytest.fixture
def aimed(fake: FakeDiscord) -> Iterator[FakeDiscord]:
    """discord.py's class-level endpoints pointed at `fake`, restored afterwards."""
    saved_base = discord.http.Route.BASE
    saved_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.config["api_base"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.config["gateway_url"])
    try:
        yield fake
    finally:
        discord.http.Route.BASE = saved_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved_gateway
