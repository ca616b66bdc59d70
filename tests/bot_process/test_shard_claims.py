"""Two bot processes sharing one index never run the same gateway shard, and their
IDENTIFYs keep Discord's rate limit together (issue 17, "Shard processes").

Each process claims its shards in the index before it connects; a second process
given a shard already run, or another SHARD_COUNT, exits 1 with one line naming the
setting and the other process. A process killed with -9 and started again on the
same recordings folder takes its own claims back at once. IDENTIFYs are paced
through the index, per rate-limit bucket, across processes.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakediscord.identify_limit import IDENTIFY_WINDOW_SECONDS
from tests.fakediscord.server import FakeDiscord

from .checks import manifest, recording_id
from .conftest import START_TIMEOUT, BotProcess, _wait_http, _wait_ready, bot_argv, bot_env, free_port
from .ops import wait_health

_HOST = socket.gethostname()


def _refused(fake: FakeDiscord, tmp_path: Path, **env: str) -> str:
    """Run a bot that must refuse to start: its one line on stderr (exit 1, no traceback)."""
    environ = bot_env(fake, tmp_path / "recordings", free_port(), **env)
    done = subprocess.run([*bot_argv(), "--log-level", "WARNING"], env=environ, cwd=tmp_path, capture_output=True,
                          text=True, timeout=START_TIMEOUT)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and fake.config["token"] not in output, output
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and not done.stdout.strip(), output
    return lines[0]


@pytest.fixture
def launch(fake: FakeDiscord, tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    """Start bot processes without waiting for them (so several start together); each
    must exit 0 on SIGTERM at teardown."""
    started: list[BotProcess] = []

    def start(name: str, **env: str) -> BotProcess:
        port = free_port()
        environ = bot_env(fake, tmp_path / name, port, **env)
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(bot_argv(), env=environ, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        bot = BotProcess(fake, proc, log_path, environ, f"http://127.0.0.1:{port}")
        started.append(bot)
        return bot

    yield start
    codes = {bot.log_path.name: bot.terminate() for bot in started if not bot.done}
    logs = "\n".join(f"--- {bot.log_path.name}\n{bot.log()[-5000:]}" for bot in started)
    assert all(code == 0 for code in codes.values()), f"{codes}\n{logs}"


def _ready(*bots: BotProcess) -> None:
    for bot in bots:
        _wait_ready(bot.fake, bot)
        _wait_http(bot)


def test_a_second_process_on_taken_shards_is_refused_and_a_killed_one_takes_its_own_back(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], tmp_path: Path, postgres_url: str) -> None:
    shared = {"DATABASE_URL": postgres_url, "SHARD_COUNT": "4"}
    first = start_bot(SHARD_IDS="0,1", RECORDINGS_DIR=str(tmp_path / "a"), **shared)
    other_folder = str(tmp_path / "b")

    line = _refused(fake, tmp_path, SHARD_IDS="1,2", RECORDINGS_DIR=other_folder, **shared)
    assert line == (f"error: SHARD_IDS: shard 1 is already run by another process (host {_HOST}, "
                    f"pid {first.proc.pid}); give each process its own shards")
    line = _refused(fake, tmp_path, DATABASE_URL=postgres_url, SHARD_COUNT="8", SHARD_IDS="4,5",
                    RECORDINGS_DIR=other_folder)
    assert line == (f"error: SHARD_COUNT: another process (host {_HOST}, pid {first.proc.pid}) runs shard 0 of "
                    "4 shards, not 8; a new SHARD_COUNT needs every process restarted with it")
    wait_health(first.http_base, 200, timeout=30)

    # kill -9 leaves its claims live in the index: another folder is refused them,
    # while the same folder (the same process started again) takes them back at once.
    first.kill()
    line = _refused(fake, tmp_path, SHARD_IDS="0,1", RECORDINGS_DIR=other_folder, **shared)
    assert line == (f"error: SHARD_IDS: shard 0 is already run by another process (host {_HOST}, "
                    f"pid {first.proc.pid}); give each process its own shards")
    again = start_bot(SHARD_IDS="0,1", RECORDINGS_DIR=str(tmp_path / "a"), **shared)
    wait_health(again.http_base, 200, timeout=30)
    assert "claimed shard(s) 0, 1 of 4 for this process" in again.log()


def test_a_plain_process_claims_every_shard_and_identifies_them_without_waiting(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], tmp_path: Path) -> None:
    """SQLite: processes share the index through one DATABASE_PATH (the default path is
    inside RECORDINGS_DIR, which no two processes may share)."""
    fake.rest.recommended_shards = 4  # no SHARD_COUNT: Discord's count, as discord.py would take it
    index = str(tmp_path / "index.sqlite3")
    first = start_bot(DATABASE_PATH=index, RECORDINGS_DIR=str(tmp_path / "a"))

    # max_concurrency 16: the four shards are four buckets, so nothing waits 5 s between them
    log = fake.identify_log()
    assert sorted(a.shard_id for a in log) == [0, 1, 2, 3] and all(a.accepted for a in log), log
    gaps = [b.at - a.at for a, b in zip(log, log[1:])]
    assert max(gaps) < IDENTIFY_WINDOW_SECONDS, gaps

    line = _refused(fake, tmp_path, DATABASE_PATH=index, RECORDINGS_DIR=str(tmp_path / "b"))
    assert line == (f"error: SHARD_IDS (not set, so every shard): shard 0 is already run by another process "
                    f"(host {_HOST}, pid {first.proc.pid}); give each process its own shards")
    line = _refused(fake, tmp_path, RECORDINGS_DIR=str(tmp_path / "a"), SHARD_COUNT="4", SHARD_IDS="3")
    assert line == (f"error: RECORDINGS_DIR: another bot process (host {_HOST}, pid {first.proc.pid}) already uses "
                    "this recordings folder; give each process its own RECORDINGS_DIR")
    wait_health(first.http_base, 200, timeout=30)
    assert len(fake.identify_log()) == 4  # the refused processes never identified


def test_two_processes_started_together_take_turns_to_identify(
        fake: FakeDiscord, launch: Callable[..., BotProcess], postgres_url: str) -> None:
    fake.set_max_concurrency(1)  # every shard in one bucket: one IDENTIFY per 5 s for the whole bot
    shared = {"DATABASE_URL": postgres_url, "SHARD_COUNT": "4"}
    bots = [launch("low", SHARD_IDS="0,1", **shared), launch("high", SHARD_IDS="2,3", **shared)]
    _ready(*bots)
    for bot in bots:
        wait_health(bot.http_base, 200, timeout=30)
    log = fake.identify_log()
    assert all(a.accepted for a in log), log  # the fake refused none
    assert sorted(a.shard_id for a in log) == [0, 1, 2, 3], log
    gaps = [b.at - a.at for a, b in zip(log, log[1:])]
    assert min(gaps) >= IDENTIFY_WINDOW_SECONDS, gaps


def test_a_process_whose_shards_were_taken_finishes_its_recordings_and_exits(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    """What a long outage of the index can lead to: the leases lapsed and another process
    took the shards. The next renewal must stop this one recording the same guilds.
    A 6 s lease (``SHARD_LEASE_SECONDS``) is renewed every 2 s, not every 20 s."""
    bot = start_bot(SHARD_LEASE_SECONDS="6")
    started = bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]})
    rid = recording_id(started)
    # another process takes shard 0 over, as one would once this one's lease had lapsed
    with contextlib.closing(sqlite3.connect(bot.recordings_dir / "index.sqlite3")) as db, db:
        db.execute("UPDATE shard_leases SET owner = 'another-folder', host = 'elsewhere', pid = 4242, "
                   "heartbeat = (julianday('now') - 2440587.5) * 86400.0")
    try:
        code = bot.proc.wait(timeout=60)  # the next renewal (every 2 s) notices; the rest is finishing
    finally:
        bot.done = True
    log = bot.log()
    assert code == 1, log
    assert ("lost the shard leases while the index was away: SHARD_IDS (not set, so every shard): shard 0 is "
            "already run by another process (host elsewhere, pid 4242)") in log, log
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"  # finished as SIGINT would, not paused
