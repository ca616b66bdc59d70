"""Standalone loopback Discord: ``python -m tests.fakediscord [--no-dave] [--port N]``.

Starts REST, gateway and voice with the default scenario (alice, bob and carol
talking in turns in the voice channel), prints ONE JSON line with what a bot
needs (api_base, gateway_url, ca_file, token, ids), and serves until SIGINT or
SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from .server import FakeDiscord

_log = logging.getLogger(__name__)

#: The keys printed on the JSON line.
PRINTED_KEYS = ("api_base", "gateway_url", "ca_file", "token", "application_id", "guild_id",
                "voice_channel_id", "text_channel_id", "members")


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakediscord",
                                     description="A loopback Discord for testing the recording bot.")
    parser.add_argument("--no-dave", action="store_true", help="voice without DAVE end-to-end encryption")
    parser.add_argument("--port", type=int, default=0, help="REST/gateway port on 127.0.0.1 (default: random)")
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default: WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        fake = FakeDiscord(dave=not args.no_dave, port=args.port).start()
    except OSError as exc:
        print(f"fakediscord: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        runner = _start_scenario(fake)
        config = fake.config
        print(json.dumps({key: config[key] for key in PRINTED_KEYS}), flush=True)
        while not stop.wait(0.5):
            pass
        if runner is not None:
            fake.run(runner.stop())
    finally:
        fake.close()
    return 0


def _start_scenario(fake: FakeDiscord) -> object | None:
    try:
        return fake.start_scenario()
    except ImportError as exc:
        _log.warning("no voice scenario (%s): serving without speakers", exc)
        return None


if __name__ == "__main__":
    sys.exit(main())
