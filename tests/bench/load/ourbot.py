"""The real bot (``python -m bot``) under load, observed as an operator would.

It is configured by environment only, records through ``/record start`` in
every guild of the stage that its shards receive (``SHARD_COUNT`` and
``SHARD_IDS``; every guild without them), and is read through ``/record status`` (ephemeral
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import probes
from .stage import Stage, rooms_on

__all__ = ["OurBot", "OurBots", "Status"]

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
    """One ``python -m bot`` process recording every room of ``stage`` on its shards."""

    def __init__(self, stage: Stage, workdir: Path, env: Mapping[str, str] | None = None) -> None:
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
        ids = base.get("SHARD_IDS")
        self.rooms = rooms_on(stage.rooms, int(base["SHARD_COUNT"]) if "SHARD_COUNT" in base else None,
                              tuple(int(i) for i in ids.split(",")) if ids else None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "--env-file", os.devnull], env=base,
                                         cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.terminate()
            raise

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
        """``/record start`` in every guild of its shards (one voice connection each)."""
        for room in self.rooms:
            answer = self._ask("record", "start", room, {"channel": room.voice_channel_id})
            if "Recording" not in answer:
                raise RuntimeError(f"/record start was refused: {answer}")

    def status(self) -> list[Status]:
        """``/record status`` in every guild of its shards."""
        out = []
        for room in self.rooms:
            answer = self._ask("record", "status", room)
            found = _STATUS.search(answer)
            if found is None:
                raise RuntimeError(f"unexpected /record status answer: {answer[-300:]}")
            out.append(Status(*(int(g) for g in found.groups())))
        return out

    def stop_recording(self) -> tuple[list[dict[str, int]], list[dict[str, Any]]]:
        """``/record stop`` in every guild of its shards; returns the receive and engine counters the bot logged."""
        for room in self.rooms:
            self._ask("record", "stop", room)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            text = self.log()
            receive = [ast.literal_eval(m) for m in _RECEIVE.findall(text)]
            engine = [json.loads(m) for m in _ENGINE.findall(text)]
            if len(receive) >= len(self.rooms) and len(engine) >= len(self.rooms):
                return receive, engine
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not log its counters at stop; log: {self.log_path}")
            time.sleep(0.1)

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.send_sigterm()
        return self.wait()

    def send_sigterm(self) -> None:
        """SIGTERM unless it exited already: it finishes its recordings and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        """Wait for the exit (a minute, then SIGKILL); returns the exit code."""
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class OurBots:
    """Several bot processes on disjoint shards of one stage, driven and read as one recorder.

    Each process gets a folder of its own (its log and ``RECORDINGS_DIR``, as
    on a real host, where two processes may not share a recordings folder)
    and ``env`` plus its own entry of ``processes``; they start one after the
    other, each waiting until it is ready, so the index's migrations never race.
    """

    def __init__(self, stage: Stage, workdir: Path, env: Mapping[str, str],
                 processes: Sequence[Mapping[str, str]]) -> None:
        self.bots: list[OurBot] = []
        try:
            for index, own in enumerate(processes):
                folder = workdir / f"bot-{index}" if len(processes) > 1 else workdir
                folder.mkdir(exist_ok=True)
                self.bots.append(OurBot(stage, folder, {**env, **own}))
        except BaseException:
            self.terminate()
            raise
        rooms = sorted(room.guild_id for bot in self.bots for room in bot.rooms)
        if rooms != sorted(room.guild_id for room in stage.rooms):
            self.terminate()
            raise ValueError("the processes' shards do not cover every room of the stage exactly once")

    @property
    def pids(self) -> list[int]:
        """Every process id."""
        return [bot.pid for bot in self.bots]

    def start_recording(self) -> None:
        """``/record start`` in every guild, each by the process whose shard receives it."""
        for bot in self.bots:
            bot.start_recording()

    def status(self) -> list[Status]:
        """``/record status`` in every guild."""
        return [status for bot in self.bots for status in bot.status()]

    def stop_recording(self) -> tuple[list[dict[str, int]], list[dict[str, Any]]]:
        """``/record stop`` in every guild; the receive and engine counters every process logged."""
        receive: list[dict[str, int]] = []
        engine: list[dict[str, Any]] = []
        for bot in self.bots:
            got_receive, got_engine = bot.stop_recording()
            receive += got_receive
            engine += got_engine
        return receive, engine

    def udp_drops(self) -> int:
        """Datagrams the kernel dropped on every process's UDP sockets."""
        return sum(probes.udp_drops(pid) for pid in self.pids)

    def terminate(self) -> None:
        """SIGTERM to every process at once, then wait for each."""
        for bot in self.bots:
            bot.send_sigterm()
        for bot in self.bots:
            bot.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
