"""The real bot (``python -m bot``) under load, observed as an operator would.

It is configured by environment only, records through ``/record start`` in
every guild of the stage, and is read through ``/record status`` (ephemeral
reply), its INFO log (the receive counters at stop, the recording engine's
counters at close) and /proc.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stage import Stage

__all__ = ["OurBot", "Status"]

_REPO = Path(__file__).resolve().parents[3]
_READY_LINE = " connected as "
_STATUS = re.compile(
    r"Packets: (\d+) received, (\d+) lost, (\d+) dropped \(queue full\), (\d+) undecryptable\..*"
    r"Worker lag: (\d+) ms", re.DOTALL)
_RECEIVE = re.compile(r"recording stopped in channel \d+: (\{.*\})")
_ENGINE = re.compile(r"recording engine \S+ closed: (\{.*\})")
START_TIMEOUT = 120.0
REPLY_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Status:
    """The counters of one ``/record status`` answer."""

    received: int
    lost: int
    dropped: int
    undecryptable: int
    lag_ms: int


class OurBot:
    """One ``python -m bot`` process recording every room of ``stage``."""

    def __init__(self, stage: Stage, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.stage = stage
        self.workdir = workdir
        self.log_path = workdir / "bot.log"
        port = _free_port()
        config = stage.fake.config
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "HTTP_", "PUBLIC_URL"))}
        base.update(
            DISCORD_TOKEN=config["token"], DISCORD_API_BASE=config["api_base"],
            DISCORD_GATEWAY_URL=config["gateway_url"], DISCORD_CA_FILE=config["ca_file"],
            RECORDINGS_DIR=str(workdir / "recordings"), HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
            PUBLIC_URL=f"http://127.0.0.1:{port}", PYTHONPATH=str(_REPO), PYTHONUNBUFFERED="1",
        )
        base.update(env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "--env-file", os.devnull], env=base,
                                         cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    @property
    def pid(self) -> int:
        """The bot's process id."""
        return self.proc.pid

    def log(self) -> str:
        """Everything the bot printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while _READY_LINE not in self.log() or not {"record"} <= {
                c["name"] for c in self.stage.fake.registered_commands(None)}:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited with code {self.proc.returncode}; log: {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot was not ready within {START_TIMEOUT:g} s; log: {self.log_path}")
            time.sleep(0.1)

    def _ask(self, name: str, sub: str, room: Any, options: dict[str, Any] | None = None) -> str:
        record = self.stage.fake.invoke_command(name, sub, options, user_id=room.owner_id,
                                                channel_id=room.text_channel_id, guild_id=room.guild_id)
        return record.wait_message(timeout=REPLY_TIMEOUT).content

    def start_recording(self) -> None:
        """``/record start`` in every guild (one voice connection each)."""
        for room in self.stage.rooms:
            answer = self._ask("record", "start", room, {"channel": room.voice_channel_id})
            if "Recording" not in answer:
                raise RuntimeError(f"/record start was refused: {answer}")

    def status(self) -> list[Status]:
        """``/record status`` in every guild."""
        out = []
        for room in self.stage.rooms:
            answer = self._ask("record", "status", room)
            found = _STATUS.search(answer)
            if found is None:
                raise RuntimeError(f"unexpected /record status answer: {answer[-300:]}")
            out.append(Status(*(int(g) for g in found.groups())))
        return out

    def stop_recording(self) -> tuple[list[dict[str, int]], list[dict[str, Any]]]:
        """``/record stop`` in every guild; returns the receive and engine counters the bot logged."""
        for room in self.stage.rooms:
            self._ask("record", "stop", room)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            text = self.log()
            receive = [ast.literal_eval(m) for m in _RECEIVE.findall(text)]
            engine = [json.loads(m) for m in _ENGINE.findall(text)]
            if len(receive) >= len(self.stage.rooms) and len(engine) >= len(self.stage.rooms):
                return receive, engine
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not log its counters at stop; log: {self.log_path}")
            time.sleep(0.1)

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
