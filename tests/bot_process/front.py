"""Running the standalone download front (``python -m bot web``) as a real process beside the bot."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .conftest import START_TIMEOUT, STOP_TIMEOUT, bot_argv, free_port
from .ops import healthz


@dataclass
class Front:
    """One ``web`` process and where it answers."""

    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def log(self) -> str:
        """Everything the front printed so far."""
        return self.log_path.read_text(errors="replace")


def front_env(bot_env: dict[str, str], port: int) -> dict[str, str]:
    """The environment of a bot run, for a front on ``port``: everything but the token."""
    env = {k: v for k, v in bot_env.items() if k != "DISCORD_TOKEN"}
    env.update(HTTP_PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}")
    return env


def _wait_ready(front: Front) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert front.proc.poll() is None, f"the front exited with {front.proc.returncode}: {front.log()[-2000:]}"
        try:
            if healthz(front.base) == (200, {"status": "ready"}):
                return
        except urllib.error.URLError:  # not listening yet
            pass
        assert time.monotonic() < deadline, "the download front was not ready in time"
        time.sleep(0.1)


@contextlib.contextmanager
def running_front(bot_env: dict[str, str], tmp_path: Path) -> Iterator[Front]:
    """A front with the settings of ``bot_env`` (no token) on a free port, once ready;
    stopped with SIGTERM at the end, which it must answer with exit code 0."""
    port = free_port()
    log_path = tmp_path / "front.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*bot_argv(), "web"], env=front_env(bot_env, port), cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
    front = Front(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(front)
        yield front
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=STOP_TIMEOUT)
    assert code == 0, front.log()[-2000:]
