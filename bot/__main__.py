"""``python -m bot`` / ``voice-recorder-bot``: run the recording bot, or one of its
operating commands, with settings from the environment or .env.

- no command: the bot (gateway, voice, recordings, download server);
- ``sync-commands``: register the slash commands with Discord once, then exit;
- ``web``: the standalone download front (no Discord connection, no token).

Each command's module is imported only when it runs, so ``web`` never loads
discord.py.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bot.config import ConfigError, Settings, help_text
from bot.logsetup import configure_logging
from bot.objects import StartCheckFailed
from bot.storage import IndexUnavailable
from bot.stores import Stores, open_stores

_COMMANDS = {
    "sync-commands": "register the slash commands with Discord once (REST only) and exit",
    "web": "serve the download pages and files alone: no Discord login, no voice, no DISCORD_TOKEN",
}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    commands = "\n".join(f"  {name:<14} {what}" for name, what in _COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Discord bot that records each speaker of a voice channel to their own WAV file.\n\n"
                    f"Without a command it runs the bot. Commands:\n{commands}",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=tuple(_COMMANDS), metavar="command",
                        help="sync-commands or web (default: run the bot)")
    parser.add_argument("--env-file", default=".env", help="the .env file to read (default: ./.env)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bot`` and the ``voice-recorder-bot`` script."""
    args = _parse_args(argv)
    try:
        settings = Settings.from_env(dotenv_path=args.env_file, need_token=args.command != "web")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(getattr(logging, args.log_level), secrets=[settings.discord_token],
                      json_lines=settings.log_format == "json")
    try:
        # sync-commands only talks to Discord: an object store that is away must not stop it.
        stores = open_stores(settings, check_objects=args.command != "sync-commands")
    except StartCheckFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except IndexUnavailable as exc:
        print(f"error: {_index_setting(settings)}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return _dispatch(args.command, settings, stores)
    except IndexUnavailable as exc:
        print(f"error: {_index_setting(settings)}: {exc}", file=sys.stderr)
        return 1
    finally:
        stores.close()


def _index_setting(settings: Settings) -> str:
    """The setting that chose the index, named in its one-line errors."""
    return "DATABASE_URL" if settings.database_url else "DATABASE_PATH"


def _dispatch(command: str | None, settings: Settings, stores: Stores) -> int:
    if command == "web":
        from bot.front import run_front
        return run_front(settings, stores)
    if command == "sync-commands":
        from bot.sync import sync_commands
        return sync_commands(settings, stores)
    from bot.runner import run_bot
    return run_bot(settings, stores)


if __name__ == "__main__":
    sys.exit(main())
