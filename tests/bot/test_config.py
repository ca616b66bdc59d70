"""Settings from environment and .env: defaults, precedence, one-line errors, a
token that never leaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import VARIABLES, ConfigError, Settings, help_text, load_dotenv

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GxYzAb.secret-part-of-the-token"


def settings(**env: str) -> Settings:
    return Settings.from_env({"DISCORD_TOKEN": TOKEN, **env}, dotenv_path=None)


def error_of(env: dict[str, str], dotenv: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, dotenv_path=dotenv)
    message = str(info.value)
    assert "\n" not in message and message
    assert TOKEN not in message and "secret-part" not in message
    # Raised "from None": nothing chained that a traceback printer would show.
    exc = info.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    return message


def test_defaults() -> None:
    s = settings()
    assert s.discord_token == TOKEN
    assert s.recordings_dir == Path("recordings")
    assert s.database_path == Path("recordings") / "index.sqlite3"
    assert (s.http_host, s.http_port, s.public_url) == ("0.0.0.0", 8080, "http://localhost:8080")
    assert s.http_max_connections == 256
    assert s.max_recording_hours == 6 and s.max_recording_seconds == 6 * 3600
    assert s.retention_days == 30
    assert s.min_free_disk_mb == 1024
    assert s.recorder_role is None and s.shard_count is None and s.shard_ids is None
    assert s.guild_ready_seconds == 2.0
    assert s.discord_api_base is None and s.discord_gateway_url is None and s.discord_ca_file is None


def test_every_value_parsed(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = settings(
        RECORDINGS_DIR=str(tmp_path / "rec"), DATABASE_PATH=str(tmp_path / "db.sqlite3"), HTTP_HOST="127.0.0.1",
        HTTP_PORT="0", HTTP_MAX_CONNECTIONS="32", PUBLIC_URL="https://rec.example.org/", RECORDER_ROLE="Recorder", MAX_RECORDING_HOURS="1.5",
        RETENTION_DAYS="7", MIN_FREE_DISK_MB="0", EMPTY_CHANNEL_MINUTES="0.5", SHARD_COUNT="4", SHARD_IDS="0, 3",
        GUILD_READY_SECONDS="0.25", DISCORD_API_BASE="http://127.0.0.1:5000/api/v10", DISCORD_GATEWAY_URL="ws://127.0.0.1:5001",
        DISCORD_CA_FILE=str(ca),
    )
    assert s.recordings_dir == tmp_path / "rec" and s.database_path == tmp_path / "db.sqlite3"
    assert (s.http_host, s.http_port, s.public_url) == ("127.0.0.1", 0, "https://rec.example.org")
    assert s.http_max_connections == 32
    assert s.recorder_role == "Recorder" and s.max_recording_hours == 1.5 and s.retention_days == 7
    assert s.min_free_disk_mb == 0 and s.shard_count == 4 and s.shard_ids == (0, 3)
    assert s.empty_channel_minutes == 0.5 and s.guild_ready_seconds == 0.25
    assert s.discord_api_base == "http://127.0.0.1:5000/api/v10"
    assert s.discord_gateway_url == "ws://127.0.0.1:5001" and s.discord_ca_file == ca


def test_database_defaults_inside_recordings_dir() -> None:
    assert settings(RECORDINGS_DIR="/data/rec").database_path == Path("/data/rec/index.sqlite3")


def test_public_url_follows_port() -> None:
    assert settings(HTTP_PORT="9000").public_url == "http://localhost:9000"


def test_dotenv_and_environment_precedence(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\n\n"
        f"export DISCORD_TOKEN='{TOKEN}'\n"
        'RECORDER_ROLE="Voice Recorder"\n'
        "HTTP_PORT=8000  # trailing comment\n"
        "RETENTION_DAYS=10\n"
    )
    s = Settings.from_env({"RETENTION_DAYS": "3"}, dotenv_path=dotenv)
    assert s.discord_token == TOKEN
    assert s.recorder_role == "Voice Recorder"
    assert s.http_port == 8000
    assert s.retention_days == 3  # the environment wins over .env


def test_missing_dotenv_is_fine(tmp_path: Path) -> None:
    s = Settings.from_env({"DISCORD_TOKEN": TOKEN}, dotenv_path=tmp_path / "absent.env")
    assert s.discord_token == TOKEN


def test_bad_dotenv_line_names_line_not_content(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"HTTP_PORT=1\n{TOKEN}\n")
    assert error_of({}, dotenv) == ".env line 2: expected NAME=value"
    assert load_dotenv(tmp_path / "nothing") == {}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "DISCORD_TOKEN: missing"),
        ({"DISCORD_TOKEN": "   "}, "DISCORD_TOKEN: missing"),
        ({"DISCORD_TOKEN": TOKEN + " x"}, "DISCORD_TOKEN: contains whitespace"),
        ({"HTTP_PORT": "http"}, "HTTP_PORT: expected a whole number, got 'http'"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT: must be between 0 and 65535, got 70000"),
        ({"HTTP_MAX_CONNECTIONS": "0"}, "HTTP_MAX_CONNECTIONS: must be between 1 and 10000, got 0"),
        ({"HTTP_MAX_CONNECTIONS": "10001"}, "HTTP_MAX_CONNECTIONS: must be between 1 and 10000, got 10001"),
        ({"HTTP_MAX_CONNECTIONS": "many"}, "HTTP_MAX_CONNECTIONS: expected a whole number, got 'many'"),
        ({"PUBLIC_URL": "rec.example.org"}, "PUBLIC_URL: expected a http/https URL"),
        ({"MAX_RECORDING_HOURS": "0"}, "MAX_RECORDING_HOURS: must be a positive number"),
        ({"MAX_RECORDING_HOURS": "six"}, "MAX_RECORDING_HOURS: expected a number"),
        ({"RETENTION_DAYS": "-1"}, "RETENTION_DAYS: must be a positive number"),
        ({"RETENTION_DAYS": "nan"}, "RETENTION_DAYS: must be a positive number"),
        ({"RETENTION_DAYS": "1000000"}, "RETENTION_DAYS: must be at most 3650, got '1000000'"),
        ({"RETENTION_DAYS": "inf"}, "RETENTION_DAYS: must be at most 3650, got 'inf'"),
        ({"MAX_RECORDING_HOURS": "169"}, "MAX_RECORDING_HOURS: must be at most 168, got '169'"),
        ({"MIN_FREE_DISK_MB": "10000001"}, "MIN_FREE_DISK_MB: must be between 0 and 10000000, got 10000001"),
        ({"EMPTY_CHANNEL_MINUTES": "1e9"}, "EMPTY_CHANNEL_MINUTES: must be at most 1440, got '1e9'"),
        ({"SHARD_COUNT": "65537"}, "SHARD_COUNT: must be between 1 and 65536, got 65537"),
        ({"MIN_FREE_DISK_MB": "-5"}, "MIN_FREE_DISK_MB: must be between 0 and 10000000, got -5"),
        ({"EMPTY_CHANNEL_MINUTES": "0"}, "EMPTY_CHANNEL_MINUTES: must be a positive number"),
        ({"EMPTY_CHANNEL_MINUTES": "soon"}, "EMPTY_CHANNEL_MINUTES: expected a number"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT: must be between 1 and 65536, got 0"),
        ({"SHARD_IDS": "0"}, "SHARD_IDS: needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1,2"}, "SHARD_IDS: shard 2 does not exist"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1,1"}, "SHARD_IDS: lists a shard twice"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,"}, "SHARD_IDS: expected a whole number"),
        ({"DISCORD_API_BASE": "ftp://x"}, "DISCORD_API_BASE: expected a http/https URL"),
        ({"DISCORD_GATEWAY_URL": "http://x"}, "DISCORD_GATEWAY_URL: expected a ws/wss URL"),
        ({"DISCORD_CA_FILE": "/nonexistent/ca.pem"}, "DISCORD_CA_FILE: no such file"),
        ({"DOWNLOAD_FORMAT": "aiff"}, "DOWNLOAD_FORMAT: expected one of wav, flac, ogg, mp3, got 'aiff'"),
        ({"ATTACH_FILES": "maybe"}, "ATTACH_FILES: expected yes or no, got 'maybe'"),
        ({"AUTORECORD_GRACE_SECONDS": "0"}, "AUTORECORD_GRACE_SECONDS: must be a positive number"),
        ({"AUTORECORD_GRACE_SECONDS": "3601"}, "AUTORECORD_GRACE_SECONDS: must be at most 3600"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: expected one of text, json, got 'xml'"),
        ({"SYNC_COMMANDS": "sometimes"}, "SYNC_COMMANDS: expected yes or no, got 'sometimes'"),
        ({"GUILD_READY_SECONDS": "0.05"}, "GUILD_READY_SECONDS: must be at least 0.1, got '0.05'"),
        ({"GUILD_READY_SECONDS": "0"}, "GUILD_READY_SECONDS: must be a positive number"),
        ({"GUILD_READY_SECONDS": "61"}, "GUILD_READY_SECONDS: must be at most 60"),
    ],
)
def test_bad_values_are_one_clear_line(env: dict[str, str], expected: str) -> None:
    full = {"DISCORD_TOKEN": TOKEN, **env} if "DISCORD_TOKEN" not in env and env else dict(env)
    assert error_of(full).startswith(expected)


def test_paths_of_the_wrong_kind(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert error_of({"DISCORD_TOKEN": TOKEN, "RECORDINGS_DIR": str(a_file)}).startswith(
        "RECORDINGS_DIR: " + repr(str(a_file)) + " exists and is not a directory"
    )
    assert error_of({"DISCORD_TOKEN": TOKEN, "DATABASE_PATH": str(tmp_path)}).startswith("DATABASE_PATH:")


def test_logs_and_command_sync_settings() -> None:
    assert (settings().log_format, settings().sync_commands) == ("text", True)
    s = settings(LOG_FORMAT="JSON", SYNC_COMMANDS="no")
    assert (s.log_format, s.sync_commands) == ("json", False)


def test_the_download_front_needs_no_token() -> None:
    assert Settings.from_env({}, dotenv_path=None, need_token=False).discord_token == ""
    assert error_of({}).startswith("DISCORD_TOKEN: missing")


def test_token_never_in_repr_or_str() -> None:
    s = settings()
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert TOKEN not in text and "secret-part" not in text
        assert "discord_token=***" in text


@pytest.mark.parametrize("url", [
    "postgresql://bot:pw@db.internal:5432/recorder", "postgres://db.internal/recorder",
    "postgresql://bot@[::1]:5433/recorder?sslmode=require", "postgresql:///recorder?host=/run/postgresql",
])
def test_database_url_selects_postgresql_and_its_password_never_shows(url: str) -> None:
    s = settings(DATABASE_URL=url)
    assert s.database_url == url
    for text in (repr(s), str(s)):
        assert url not in text and "pw@" not in text and "database_url=***" in text
    assert settings().database_url is None  # without it: SQLite at DATABASE_PATH, as ever


@pytest.mark.parametrize("url", [
    "postgresql://bot:hunter2@db.internal:port/recorder", "postgresql://bot:hunter2@db.internal:5432",
    "postgresql://bot:hunter2@db.internal:5432/", "mysql://bot:hunter2@db.internal/recorder",
    "bot:hunter2@db.internal/recorder", "postgresql://bot:hunter2@:5432/recorder",
    "postgresql://bot:hunter2@db.internal:99999/recorder",
])
def test_a_malformed_database_url_is_one_line_without_the_password(url: str) -> None:
    message = error_of({"DISCORD_TOKEN": TOKEN, "DATABASE_URL": url})
    assert message == "DATABASE_URL: expected postgresql://user:password@host:port/database"
    assert "hunter2" not in message


def test_help_lists_every_variable_with_default() -> None:
    text = help_text()
    names = [
        "DISCORD_TOKEN", "RECORDINGS_DIR", "DATABASE_PATH", "DATABASE_URL", "INDEX_BUSY_SECONDS", "STORAGE_URL",
        "STORAGE_ENDPOINT",
        "STORAGE_REGION", "KEEP_LOCAL_COPY", "STORAGE_RETRY_SECONDS", "HTTP_HOST", "HTTP_PORT",
        "HTTP_MAX_CONNECTIONS", "PUBLIC_URL",
        "RECORDER_ROLE", "MAX_RECORDING_HOURS", "RETENTION_DAYS", "MIN_FREE_DISK_MB", "EMPTY_CHANNEL_MINUTES",
        "DOWNLOAD_FORMAT", "ATTACH_FILES", "AUTORECORD_GRACE_SECONDS", "LOG_FORMAT", "SYNC_COMMANDS", "SHARD_COUNT",
        "SHARD_IDS", "SHARD_LEASE_SECONDS", "GUILD_READY_SECONDS", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL", "DISCORD_CA_FILE",
    ]
    assert [v.name for v in VARIABLES] == names
    lines = text.splitlines()
    for v in VARIABLES:
        (line,) = [ln for ln in lines if ln.split() and ln.split()[0] == v.name]
        assert v.default in line and v.meaning in line
    assert "./recordings" in text and "RECORDINGS_DIR/index.sqlite3" in text


def test_retention_forever_keeps_recordings() -> None:
    assert settings(RETENTION_DAYS="forever").retention_days is None
    assert settings(RETENTION_DAYS="Forever").retention_days is None


def test_an_absurd_setting_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    """The real process, before it reaches Discord: exit 2 and one line on stderr."""
    env = {"PATH": os.environ["PATH"], "DISCORD_TOKEN": TOKEN, "RETENTION_DAYS": "1000000",
           "RECORDINGS_DIR": str(tmp_path / "recordings")}
    done = subprocess.run([sys.executable, "-m", "bot", "--env-file", os.devnull], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: RETENTION_DAYS: must be at most 3650, got '1000000'\n"
    assert TOKEN not in done.stdout + done.stderr



def test_without_storage_url_recordings_stay_in_the_folder() -> None:
    settings = Settings.from_env({"DISCORD_TOKEN": "t"}, dotenv_path=None)
    assert settings.storage is None and settings.keep_local_copy is False
    assert settings.storage_retry_seconds == 300


def test_storage_settings_are_parsed() -> None:
    settings = Settings.from_env({"DISCORD_TOKEN": "t", "STORAGE_URL": "s3://recordings/bot",
                                  "STORAGE_ENDPOINT": "http://127.0.0.1:9000", "STORAGE_REGION": "auto",
                                  "KEEP_LOCAL_COPY": "yes", "STORAGE_RETRY_SECONDS": "2.5"}, dotenv_path=None)
    assert settings.storage is not None
    assert (settings.storage.bucket, settings.storage.prefix) == ("recordings", "bot/")
    assert (settings.storage.endpoint, settings.storage.region) == ("http://127.0.0.1:9000", "auto")
    assert settings.keep_local_copy is True
    assert settings.storage_retry_seconds == 2.5


@pytest.mark.parametrize(("env", "message"), [
    ({"STORAGE_URL": "ftp://bucket"}, "STORAGE_URL: expected s3://bucket/prefix, got 'ftp://bucket'"),
    ({"STORAGE_URL": "s3://bucket", "STORAGE_ENDPOINT": "minio:9000"},
     "STORAGE_ENDPOINT: expected an http or https URL, got 'minio:9000'"),
    ({"STORAGE_ENDPOINT": "http://minio:9000"}, "STORAGE_ENDPOINT: needs STORAGE_URL to be set too"),
    ({"STORAGE_URL": "s3://bucket", "KEEP_LOCAL_COPY": "maybe"}, "KEEP_LOCAL_COPY: expected yes or no, got 'maybe'"),
    ({"STORAGE_URL": "s3://bucket", "STORAGE_RETRY_SECONDS": "0"},
     "STORAGE_RETRY_SECONDS: must be a positive number, got '0'"),
    ({"STORAGE_URL": "s3://bucket", "STORAGE_RETRY_SECONDS": "7200"},
     "STORAGE_RETRY_SECONDS: must be at most 3600, got '7200'"),
])
def test_bad_storage_settings_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DISCORD_TOKEN": "t", **env}, dotenv_path=None)
    assert str(caught.value) == message


def test_index_busy_and_shard_lease_seconds_default_parse_and_reach_their_ends() -> None:
    assert settings().index_busy_seconds == 10.0 and settings().shard_lease_seconds == 60.0
    assert settings(INDEX_BUSY_SECONDS="2.5").index_busy_seconds == 2.5
    assert settings(INDEX_BUSY_SECONDS="600").index_busy_seconds == 600.0
    assert settings(SHARD_LEASE_SECONDS="6").shard_lease_seconds == 6.0
    assert settings(SHARD_LEASE_SECONDS="3600").shard_lease_seconds == 3600.0


@pytest.mark.parametrize(("env", "message"), [
    ({"INDEX_BUSY_SECONDS": "0"}, "INDEX_BUSY_SECONDS: must be a positive number, got '0'"),
    ({"INDEX_BUSY_SECONDS": "601"}, "INDEX_BUSY_SECONDS: must be at most 600, got '601'"),
    ({"INDEX_BUSY_SECONDS": "soon"}, "INDEX_BUSY_SECONDS: expected a number, got 'soon'"),
    ({"SHARD_LEASE_SECONDS": "5.9"}, "SHARD_LEASE_SECONDS: must be at least 6, got '5.9'"),
    ({"SHARD_LEASE_SECONDS": "0"}, "SHARD_LEASE_SECONDS: must be a positive number, got '0'"),
    ({"SHARD_LEASE_SECONDS": "3601"}, "SHARD_LEASE_SECONDS: must be at most 3600, got '3601'"),
    ({"SHARD_LEASE_SECONDS": "nan"}, "SHARD_LEASE_SECONDS: must be a positive number, got 'nan'"),
])
def test_bad_index_busy_and_shard_lease_seconds_are_one_whole_line(env: dict[str, str], message: str) -> None:
    assert error_of({"DISCORD_TOKEN": TOKEN, **env}) == message
