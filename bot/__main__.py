"""``python -m bot``: run the recording bot with settings from the environment or .env."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import discord

from bot.app import RecorderBot
from bot.config import ConfigError, Settings, help_text
from bot.endpoints import apply_endpoints, tls_connector
from bot.storage import IndexUnavailable
from bot.logsetup import configure_logging
from bot.objects import ObjectStore, StartCheckFailed
from sinks.opus import OpusError

_log = logging.getLogger("bot")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Discord bot that records each speaker of a voice channel to their own WAV file.",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env-file", default=".env", help="the .env file to read (default: ./.env)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


async def _run(settings: Settings) -> int:
    apply_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    connector = tls_connector(str(settings.discord_ca_file) if settings.discord_ca_file else None)
    bot = RecorderBot(settings, connector=connector)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop(pause: bool) -> None:
        bot.pause_on_close = pause
        stopping.set()

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
            return 0
        waiter.cancel()
        runner.result()  # re-raises what ended the bot
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bot`` and the ``voice-recorder-bot`` script."""
    args = _parse_args(argv)
    try:
        settings = Settings.from_env(dotenv_path=args.env_file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(getattr(logging, args.log_level), secrets=[settings.discord_token])
    if settings.storage is not None:
        try:
            ObjectStore(settings.storage).check()
        except StartCheckFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_run(settings))
    except discord.LoginFailure:
        print("error: DISCORD_TOKEN was rejected by Discord; check the token in the developer portal",
              file=sys.stderr)
        return 1
    except discord.PrivilegedIntentsRequired:
        print("error: Discord refused the requested intents", file=sys.stderr)
        return 1
    except IndexUnavailable as exc:
        print(f"error: {'DATABASE_URL' if settings.database_url else 'DATABASE_PATH'}: {exc}", file=sys.stderr)
        return 1
    except (OSError, OpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
