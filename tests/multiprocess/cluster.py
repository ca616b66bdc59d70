"""Several real processes against one loopback Discord, as a multi-machine install runs them:
the one-shot ``sync-commands``, bot processes on disjoint shards, and the download front.

Each process is configured only through its environment (built by
``tests.bot_process.conftest.bot_env``, as for one bot) and logs to its own
file, attached to the report of a failed test. Processes are launched first and
waited for afterwards, so several start at once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.bot_process.conftest import START_TIMEOUT, STOP_TIMEOUT, BotProcess, bot_argv, bot_env, free_port, is_ready
from tests.bot_process.ops import healthz
from tests.fakediscord.server import FakeDiscord

__all__ = ["Cluster", "FrontProcess"]


@dataclass
class FrontProcess:
    """One run of ``python -m bot web``."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    base: str
    done: bool = False


class Cluster:
    """The processes of one test; :meth:`close` stops those still running."""

    def __init__(self, fake: FakeDiscord, workdir: Path, logs: list[Path]) -> None:
        self.fake = fake
        self.workdir = workdir
        self._logs = logs
        self._bots: list[BotProcess] = []
        self._fronts: list[FrontProcess] = []

    def _log_path(self, name: str) -> Path:
        path = self.workdir / f"{name}.log"
        assert not path.exists(), f"a process named {name} ran already"
        self._logs.append(path)
        return path

    def sync_commands(self, env: Mapping[str, str]) -> str:
        """Run ``python -m bot sync-commands`` once with `env` (on top of the fake's endpoints);
        its one line of output (it must exit 0)."""
        done = subprocess.run([*bot_argv(), "sync-commands"],
                              env=bot_env(self.fake, self.workdir / "sync", free_port(), **env),
                              cwd=self.workdir, capture_output=True, text=True, timeout=START_TIMEOUT)
        assert done.returncode == 0, f"sync-commands exited with {done.returncode}: {done.stderr[-2000:]}"
        return done.stdout.strip()

    def launch_bot(self, name: str, env: Mapping[str, str]) -> BotProcess:
        """Start ``python -m bot`` with `env` (RECORDINGS_DIR, SHARD_IDS, ...); :meth:`wait_started` waits for it."""
        port = free_port()
        full_env = bot_env(self.fake, self.workdir / name, port, **env)
        log_path = self._log_path(name)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(bot_argv(), env=full_env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        bot = BotProcess(self.fake, proc, log_path, full_env, f"http://127.0.0.1:{port}")
        self._bots.append(bot)
        return bot

    def launch_front(self, name: str, port: int, env: Mapping[str, str]) -> FrontProcess:
        """Start ``python -m bot web`` on `port` with `env` and no DISCORD_TOKEN."""
        full_env = {k: v for k, v in bot_env(self.fake, self.workdir / name, port, **env).items()
                    if k != "DISCORD_TOKEN"}
        log_path = self._log_path(name)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*bot_argv(), "web"], env=full_env, cwd=self.workdir, stdout=log,
                                    stderr=subprocess.STDOUT)
        front = FrontProcess(proc, log_path, f"http://127.0.0.1:{port}")
        self._fronts.append(front)
        return front

    def wait_started(self, *processes: BotProcess | FrontProcess) -> None:
        """Until every bot logged its on_ready and accepts download connections, and every front's
        ``/healthz`` answers 200."""
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(processes)
        while waiting:
            for process in list(waiting):
                code = process.proc.poll()
                assert code is None, f"{process.log_path.name}: exited with {code} during start-up"
                if _started(process):
                    waiting.remove(process)
            assert time.monotonic() < deadline, (
                f"not started within {START_TIMEOUT:g} s: {', '.join(p.log_path.name for p in waiting)}")
            time.sleep(0.05)

    def stop(self, *processes: BotProcess | FrontProcess) -> None:
        """SIGTERM to all of them at once (as ``docker compose stop`` does); each must exit 0 in time."""
        for process in processes:
            process.proc.send_signal(signal.SIGTERM)
        failures = []
        for process in processes:
            try:
                code = process.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.proc.kill()
                code = process.proc.wait()
                failures.append(f"{process.log_path.name}: still running {STOP_TIMEOUT:g} s after SIGTERM")
            else:
                if code != 0:
                    failures.append(f"{process.log_path.name}: exit code {code} after SIGTERM")
            process.done = True
        assert not failures, "; ".join(failures)

    def close(self) -> None:
        """Stop every process still running (each must exit 0)."""
        self.stop(*[p for p in [*self._bots, *self._fronts] if not p.done and p.proc.poll() is None])
        exited = [f"{p.log_path.name}: exited by itself with {p.proc.returncode}"
                  for p in [*self._bots, *self._fronts] if not p.done]
        assert not exited, "; ".join(exited)


def _started(process: BotProcess | FrontProcess) -> bool:
    if isinstance(process, FrontProcess):
        try:
            return healthz(process.base)[0] == 200
        except (urllib.error.URLError, ConnectionError):  # not listening yet
            return False
    if not is_ready(process):
        return False
    with socket.create_connection(("127.0.0.1", int(process.env["HTTP_PORT"])), timeout=10):
        return True
