"""Start-up failures the operator sees: a rejected token is one clear line, never echoed."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.fakediscord.server import FakeDiscord

from .conftest import bot_argv, bot_env, free_port

REJECTED = "error: DISCORD_TOKEN was rejected by Discord; check the token in the developer portal"
#: The bot's own log format (bot/logsetup.py); at INFO its start-up lines share stderr with errors.
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO) ")


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_rejected_token_is_one_line_without_traceback_or_the_token(fake: FakeDiscord, tmp_path: Path,
                                                                    level: str) -> None:
    # Shaped like a real token, so nothing about its form gives it away; the fake knows another one.
    token = f"{secrets.token_urlsafe(18)}.{secrets.token_urlsafe(6)}.{secrets.token_urlsafe(27)}"
    assert token != fake.config["token"]
    env = bot_env(fake, tmp_path / "recordings", free_port(), DISCORD_TOKEN=token)
    done = subprocess.run([*bot_argv(), "--log-level", level], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert token not in output
    assert "Traceback" not in output
    lines = done.stderr.strip().splitlines()
    if level == "WARNING":
        assert lines == [REJECTED], done.stderr
    else:
        assert [line for line in lines if not _LOG_LINE.match(line)] == [REJECTED], done.stderr
