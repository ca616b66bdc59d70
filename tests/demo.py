"""The loopback demo (`make run` without a token): the real bot records simulated speakers.

Starts the loopback Discord (tests/fakediscord) with alice, bob and carol
talking in turns in its voice channel (DAVE on), runs the real bot as its own
process (`python -m bot`, configured only through its environment), invokes
`/record start`, lets the conversation run, invokes `/record stop`, prints the
bot's answers and where the WAV files are, then serves the download page
until interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.fakediscord.server import FakeDiscord


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to record (default 20)")
    parser.add_argument("--out", type=Path, default=Path("recordings"), help="RECORDINGS_DIR (default ./recordings)")
    parser.add_argument("--http-port", type=int, default=0, help="download server port (default: a free one)")
    parser.add_argument("--no-serve", action="store_true", help="exit after the recording instead of serving")
    parser.add_argument("--no-dave", action="store_true", help="speakers without DAVE end-to-end encryption")
    return parser.parse_args(argv)


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    args = _parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    port = args.http_port or _free_port()
    log_path = args.out / "demo-bot.log"
    with FakeDiscord(dave=not args.no_dave) as fake:
        config = fake.config
        fake.start_scenario()
        env = dict(os.environ, DISCORD_TOKEN=config["token"], DISCORD_API_BASE=config["api_base"],
                   DISCORD_GATEWAY_URL=config["gateway_url"], DISCORD_CA_FILE=config["ca_file"],
                   RECORDINGS_DIR=str(args.out), HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
                   PUBLIC_URL=f"http://127.0.0.1:{port}")
        _say(f"Loopback Discord up (DAVE {'off' if args.no_dave else 'on'}): alice, bob and carol are talking "
             f"in the voice channel. Bot log: {log_path}")
        with open(log_path, "w") as log:
            bot = subprocess.Popen([sys.executable, "-m", "bot", "--env-file", os.devnull], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            return _drive(fake, bot, args)
        finally:
            bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(timeout=30)
            except subprocess.TimeoutExpired:
                bot.kill()


def _drive(fake: FakeDiscord, bot: subprocess.Popen[bytes], args: argparse.Namespace) -> int:
    config = fake.config
    try:
        # The bot registers its commands before its gateway session is up; a command
        # reaches it only once both are done.
        fake.wait_for(lambda: bot.poll() is not None or (
            any(c["name"] == "record" for c in fake.registered_commands(None)) and fake.gateway_connected()),
            timeout=60, what="the bot's commands and gateway session")
    except TimeoutError:
        _say("The bot did not register its commands and connect within 60 s; see its log.")
        return 1
    if bot.poll() is not None:
        _say(f"The bot exited with code {bot.returncode}; see its log.")
        return 1
    owner = config["members"]["owner"]
    _say("> /record start")
    start = fake.invoke_command("record", "start", {"channel": config["voice_channel_id"]}, user_id=owner)
    _say(start.wait_message(timeout=60).content)
    deadline = time.monotonic() + args.seconds
    while (left := deadline - time.monotonic()) > 0:
        print(f"\rrecording... {args.seconds - left:4.0f} / {args.seconds:.0f} s", end="", flush=True)
        time.sleep(min(1.0, left))
    print(flush=True)
    _say("> /record stop")
    stop = fake.invoke_command("record", "stop", user_id=owner)
    reply = stop.wait_message(timeout=120)
    _say(reply.content)
    for attachment in reply.attachments:
        _say(f"(attached: {attachment.filename}, {len(attachment.data)} bytes)")
    recording_dirs = sorted((p for p in args.out.iterdir() if (p / "manifest.json").exists()),
                            key=lambda p: p.stat().st_mtime)
    if recording_dirs:
        _say(f"WAV files in {recording_dirs[-1]}:")
        for wav in sorted(recording_dirs[-1].glob("*.wav")):
            _say(f"  {wav.name}  ({wav.stat().st_size} bytes)")
    if args.no_serve:
        return 0
    _say("Serving the download page at the link above; press Ctrl-C to stop.")
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    while not stopped.wait(0.5):
        if bot.poll() is not None:
            _say(f"The bot exited with code {bot.returncode}; see its log.")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
