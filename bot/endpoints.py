"""Where the bot finds Discord: the API base, the gateway, extra trusted CAs.

The defaults are Discord's own. A self-hoster behind a proxy, and our tests
against the loopback Discord, change them through configuration alone
(DISCORD_API_BASE, DISCORD_GATEWAY_URL, DISCORD_CA_FILE).
"""

from __future__ import annotations

import logging
import ssl

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

__all__ = ["apply_endpoints", "tls_connector"]

_log = logging.getLogger(__name__)


def apply_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Point discord.py's REST routes and gateway at the configured addresses.

    discord.py keeps both as class attributes, so this affects every client in
    the process; a bot process runs one client.
    """
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
        _log.info("Discord API base: %s", discord.http.Route.BASE)
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
        _log.info("Discord gateway: %s", gateway_url)


def tls_connector(ca_file: str | None) -> aiohttp.TCPConnector | None:
    """A connector trusting the system CAs plus `ca_file`, or None for the default.

    discord.py opens the REST session, the gateway and every voice websocket
    through this connector, so one setting covers all TLS the bot makes.
    Must be called with an event loop running.
    """
    if not ca_file:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return aiohttp.TCPConnector(ssl=context)
