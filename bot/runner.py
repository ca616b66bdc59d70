"""Run the recording bot until SIGTERM or SIGINT (``voice-recorder-bot`` with no subcommand)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import discord

from bot.app import RecorderBot
from bot.config import Settings
from bot.endpoints import apply_endpoints, tls_connector
from bot.shard_claim import ShardClaimRefused
from bot.stores import Stores
from sinks.opus import OpusError

__all__ = ["run_bot"]

_log = logging.getLogger("bot")


async def _run(settings: Settings, stores: Stores) -> int:
    apply_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    connector = tls_connector(str(settings.discord_ca_file) if settings.discord_ca_file else None)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop(pause: bool) -> None:
        bot.pause_on_close = pause
        stopping.set()

    # Losing its shards to another process stops the bot for good, as SIGINT does.
    bot = RecorderBot(settings, stores, connector=connector, stop=lambda: stop(False))

    # SIGTERM is what a restart sends (systemd, docker): recordings pause for the next
    # start. SIGINT (Ctrl-C, `systemctl kill -s INT`) stops for good: they are finished.
    loop.add_signal_handler(signal.SIGTERM, stop, True)
    loop.add_signal_handler(signal.SIGINT, stop, False)
    async with bot:
        runner = asyncio.create_task(bot.start(settings.discord_token))
        waiter = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            _log.info("shutting down: %s open recordings",
                      "pausing (for the next start) or finalizing" if bot.pause_on_close else "finalizing")
            await bot.close()
            await asyncio.gather(runner, return_exceptions=True)
            return 1 if bot.fatal_error else 0
        waiter.cancel()
        runner.result()  # re-raises what ended the bot
    return 0


def run_bot(settings: Settings, stores: Stores) -> int:
    """Run the bot with ``stores`` (the caller closes them); the exit code (errors are one line on stderr)."""
    try:
        return asyncio.run(_run(settings, stores))
    except discord.LoginFailure:
        print("error: DISCORD_TOKEN was rejected by Discord; check the token in the developer portal",
              file=sys.stderr)
        return 1
    except ShardClaimRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except discord.PrivilegedIntentsRequired:
        print("error: Discord refused the requested intents", file=sys.stderr)
        return 1
    except (OSError, OpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
