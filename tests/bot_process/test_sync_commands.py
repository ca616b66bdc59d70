"""Slash commands synced once by ``voice-recorder-bot sync-commands``, or at start where
SYNC_COMMANDS says so (the default): shard processes need not each sync at every start."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakediscord.server import FakeDiscord

from .conftest import START_TIMEOUT, BotProcess, bot_argv, bot_env, free_port, is_ready

_COMMANDS = ["record", "recordings", "settings"]


def _sync(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bot_argv(), "sync-commands"], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=START_TIMEOUT)


@pytest.fixture
def unsynced_bot(fake: FakeDiscord, tmp_path: Path) -> Iterator[BotProcess]:
    """The bot started with SYNC_COMMANDS=no, once it is connected (nothing registered to wait for)."""
    port = free_port()
    env = bot_env(fake, tmp_path / "recordings", port, SYNC_COMMANDS="no")
    log_path = tmp_path / "bot.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(bot_argv(), env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    bot = BotProcess(fake, proc, log_path, env, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not is_ready(bot):
            assert proc.poll() is None, f"the bot exited with {proc.returncode}: {bot.log()[-2000:]}"
            assert time.monotonic() < deadline, "the bot did not connect"
            time.sleep(0.05)
        yield bot
    finally:
        if not bot.done:
            assert bot.terminate() == 0, bot.log()[-2000:]


def test_sync_commands_registers_once_for_bots_that_do_not_sync(
        fake: FakeDiscord, unsynced_bot: BotProcess, tmp_path: Path) -> None:
    assert fake.command_syncs() == [], "SYNC_COMMANDS=no synced all the same"
    assert "not synced at start (SYNC_COMMANDS=no)" in unsynced_bot.log()

    done = _sync(unsynced_bot.env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "synced 3 global slash commands with Discord: /record, /recordings, /settings"
    assert fake.command_syncs() == [(None, _COMMANDS)]
    assert fake.config["token"] not in done.stdout + done.stderr
    # The running bot answers the commands the sync registered.
    answer = unsynced_bot.ask("record", "status")
    assert answer.content == "Nothing is being recorded in this server.", answer.content


def test_the_bot_syncs_at_start_by_default(fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    start_bot()
    assert fake.command_syncs() == [(None, _COMMANDS)]


def test_sync_commands_with_a_rejected_token_says_so_in_one_line(fake: FakeDiscord, tmp_path: Path) -> None:
    env = bot_env(fake, tmp_path / "recordings", free_port(), DISCORD_TOKEN="not-the-token." + "x" * 40)
    done = _sync(env, tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == \
        "error: DISCORD_TOKEN was rejected by Discord; check the token in the developer portal"
    assert "Traceback" not in done.stderr, done.stderr
    assert fake.command_syncs() == []
