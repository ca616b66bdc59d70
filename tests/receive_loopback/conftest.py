"""Fixtures for end-to-end receive tests: a loopback Discord with discord.py aimed at it.

discord.py is pointed at the fake only through its public knobs
(``Route.BASE``, ``DiscordWebSocket.DEFAULT_GATEWAY`` and a connector that
trusts the fake's test CA), restored after every test.
"""

from __future__ import annotations

from collections.abc import Iterator

import discord.gateway
import discord.http
import pytest
import yarl

from tests.fakediscord.server import FakeDiscord


def _aimed(dave: bool) -> Iterator[FakeDiscord]:
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    with FakeDiscord(dave=dave) as fake:
        discord.http.Route.BASE = fake.config["api_base"]
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.config["gateway_url"])
        try:
            yield fake
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
def dave_fake() -> Iterator[FakeDiscord]:
    """A loopback Discord running DAVE, discord.py aimed at it."""
    yield from _aimed(True)


@pytest.fixture
def plain_fake() -> Iterator[FakeDiscord]:
    """A loopback Discord without DAVE, discord.py aimed at it."""
    yield from _aimed(False)
