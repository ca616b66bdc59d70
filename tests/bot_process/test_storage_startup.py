"""A STORAGE_URL the bot cannot use: one clear line naming the setting at start,
no traceback, never a secret, and a non-zero exit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.objects import StorageSettings
from tests.fakediscord.server import FakeDiscord
from tests.s3server import S3Server, s3_server, s3_settings  # noqa: F401 - fixtures

from .conftest import bot_argv, bot_env, free_port


def _start(fake: FakeDiscord, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = bot_env(fake, tmp_path / "recordings", free_port(), **env)
    return subprocess.run([*bot_argv(), "--log-level", "WARNING"], env=environ, cwd=tmp_path, capture_output=True,
                          text=True, timeout=90)


def _one_line(done: subprocess.CompletedProcess[str], secret: str) -> str:
    output = done.stdout + done.stderr
    assert secret not in output
    assert "Traceback" not in output, output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and not done.stdout.strip(), output
    assert done.returncode == 1, output
    return lines[0]


def test_an_unreachable_endpoint_is_one_line(fake: FakeDiscord, tmp_path: Path, s3_server: S3Server,
                                             s3_settings: StorageSettings) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    done = _start(fake, tmp_path, STORAGE_URL=s3_settings.url, STORAGE_ENDPOINT=endpoint)
    line = _one_line(done, s3_server.secret_key)
    assert line == f"error: STORAGE_ENDPOINT {endpoint}: cannot reach the object store (connection refused)"


def test_a_missing_bucket_is_one_line(fake: FakeDiscord, tmp_path: Path, s3_server: S3Server,
                                      s3_settings: StorageSettings) -> None:
    done = _start(fake, tmp_path, STORAGE_URL="s3://no-such-bucket-here/x", STORAGE_ENDPOINT=s3_server.endpoint)
    line = _one_line(done, s3_server.secret_key)
    assert line == "error: STORAGE_URL s3://no-such-bucket-here/x/: the object store has no bucket named " \
                   "'no-such-bucket-here'"


def test_refused_credentials_are_one_line(fake: FakeDiscord, tmp_path: Path, s3_server: S3Server,
                                          s3_settings: StorageSettings) -> None:
    wrong = "wrong" + s3_server.secret_key[5:]
    done = _start(fake, tmp_path, STORAGE_URL=s3_settings.url, STORAGE_ENDPOINT=s3_server.endpoint,
                  AWS_SECRET_ACCESS_KEY=wrong)
    line = _one_line(done, wrong)
    assert line.startswith(f"error: STORAGE_URL {s3_settings.url}: the object store refused the credentials ("), line


def test_a_malformed_storage_url_is_refused_before_anything_starts(fake: FakeDiscord, tmp_path: Path) -> None:
    done = _start(fake, tmp_path, STORAGE_URL="s3://AK:SECRETVALUE@bucket/x")
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "SECRETVALUE" not in output and "Traceback" not in output, output
    assert done.stderr.strip().startswith("error: STORAGE_URL: credentials do not belong in the URL"), output
    assert not (tmp_path / "recordings").exists()
