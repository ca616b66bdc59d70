"""discord-ext-voice-recv under the same load: its venv, and a driver for vrecv_runner.py.

The library and its discord.py live in a venv under the user's cache
directory, created on first use; they are never the project's dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .stage import Stage

__all__ = ["VRECV_PACKAGES", "ensure_venv", "VoiceRecvBot"]

VRECV_PACKAGES = ("discord.py[voice]==2.7.1", "discord-ext-voice-recv==0.5.2a179")
_RUNNER = Path(__file__).with_name("vrecv_runner.py")
START_TIMEOUT = 180.0


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/voice-recorder-bench`` (default ``~/.cache/...``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "voice-recorder-bench"


def ensure_venv() -> Path:
    """The venv's python, creating the venv and installing the library the first time."""
    venv = cache_dir() / "vrecv-venv"
    python = venv / "bin" / "python"
    ready = venv / ".installed"
    if not ready.exists():
        print(f"creating {venv} with {' '.join(VRECV_PACKAGES)} (first use only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *VRECV_PACKAGES], check=True)
        ready.touch()
    return python


class VoiceRecvBot:
    """vrecv_runner.py logged in to ``stage``'s fake, listening in every room."""

    def __init__(self, stage: Stage, workdir: Path, python: Path) -> None:
        config = stage.fake.config
        args = {
            "api_base": config["api_base"], "gateway_url": config["gateway_url"], "ca_file": config["ca_file"],
            "token": config["token"], "channels": [r.voice_channel_id for r in stage.rooms],
            "out": str(workdir / "wav"),
        }
        self.log_path = workdir / "vrecv.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open for the process's lifetime
        self.proc = subprocess.Popen([str(python), str(_RUNNER), json.dumps(args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, cwd=workdir, text=True)
        first = self._read(START_TIMEOUT)
        if not first.get("ready"):
            raise RuntimeError(f"voice-recv runner did not start: {first}; log: {self.log_path}")

    @property
    def pid(self) -> int:
        """The runner's process id."""
        return self.proc.pid

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"voice-recv runner exited ({self.proc.poll()}); log: {self.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError("voice-recv runner answered too late")
        return json.loads(line)

    def _command(self, word: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self._read(60)

    def stats(self) -> dict[str, int]:
        """{"packets": real packets its sinks got, "filled": synthesized ones, "users": files,
        "buffered": packets still in its jitter buffers}."""
        return self._command("stats")

    def stop(self) -> dict[str, int]:
        """Stop listening, close the files, exit; the final counters."""
        final = self._command("stop")
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return final

    def kill(self) -> None:
        """End the runner if it is still there."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
