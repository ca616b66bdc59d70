"""A DATABASE_URL the bot cannot use: one clear line naming the setting at start,
no traceback, never the password, and a non-zero exit."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakediscord.server import FakeDiscord
from tests.postgres import PostgresServer

from .conftest import bot_argv, bot_env, free_port

#: A password that must appear nowhere in what the bot prints.
SECRET = secrets.token_urlsafe(12)


def _start(fake: FakeDiscord, tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = bot_env(fake, tmp_path / "recordings", free_port(), DATABASE_URL=url)
    return subprocess.run([*bot_argv(), "--log-level", "WARNING"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    output = done.stdout + done.stderr
    assert SECRET not in output
    assert "Traceback" not in output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and not done.stdout.strip(), output
    return lines[0]


# Templates, not URLs: test ids must not change between collections (test workers
# collect separately), and the password is drawn anew for each run.
@pytest.mark.parametrize("template", [
    "postgresql://bot:{secret}@db.example:port/recordings",
    "postgresql://bot:{secret}@db.example:5432",
    "mysql://bot:{secret}@db.example:3306/recordings",
    "bot:{secret}@db.example/recordings",
])
def test_a_malformed_url_is_refused_before_anything_starts(fake: FakeDiscord, tmp_path: Path, template: str) -> None:
    done = _start(fake, tmp_path, template.format(secret=SECRET))
    assert done.returncode == 2, done.stderr
    assert _one_line(done) == "error: DATABASE_URL: expected postgresql://user:password@host:port/database"
    assert not (tmp_path / "recordings").exists()


@pytest.mark.parametrize(("make_url", "says"), [
    (lambda server: f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/recordings", "Connection refused"),
    (lambda server: server.url("postgres", password=SECRET),
     'password authentication failed for user "postgres"'),
    (lambda server: server.url("nosuchdb"), 'database "nosuchdb" does not exist'),
], ids=["unreachable", "credentials-refused", "missing-database"])
def test_a_database_the_bot_cannot_use_is_one_line_naming_the_setting(
        fake: FakeDiscord, tmp_path: Path, postgres_server: PostgresServer,
        make_url: Callable[[PostgresServer], str], says: str) -> None:
    url = make_url(postgres_server)
    done = _start(fake, tmp_path, url)
    assert done.returncode == 1, done.stderr
    line = _one_line(done)
    assert line.startswith("error: DATABASE_URL: cannot connect to postgresql://postgres@127.0.0.1:"), line
    assert line.endswith(says), line
    assert postgres_server.password not in line
