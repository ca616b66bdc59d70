"""The bot's settings, read from the environment or a ``.env`` file.

Every variable, its default and its meaning are listed once, in :data:`VARIABLES`
(``python -m bot --help`` prints them through :func:`help_text`; README's
configuration table and ``deploy/.env.example`` name the same set, which
``tests/test_settings_docs.py`` checks).

Values in the process environment win over the ``.env`` file. A missing or bad
value raises :class:`ConfigError`, whose ``str`` is one line naming the variable
and the problem; the token never appears in any message or ``repr``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.objects.settings import StorageSettingError, StorageSettings

__all__ = ["ConfigError", "DOWNLOAD_FORMATS", "Settings", "VARIABLES", "Variable", "help_text", "load_dotenv"]

#: The formats a recording's files can be downloaded in; a server picks its default.
DOWNLOAD_FORMATS = ("wav", "flac", "ogg", "mp3")


class ConfigError(Exception):
    """A missing or invalid setting; ``str(error)`` is one line fit for users."""


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    """One documented environment variable."""

    name: str
    default: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("DISCORD_TOKEN", "(required)", "Bot token from the Discord developer portal; keep it secret."),
    Variable("RECORDINGS_DIR", "./recordings", "Directory holding one folder per recording."),
    Variable("DATABASE_PATH", "RECORDINGS_DIR/index.sqlite3", "SQLite index: recordings, download keys, opt-outs."),
    Variable("DATABASE_URL", "(SQLite)", "postgresql://user:password@host:port/database keeps the index in "
                                         "PostgreSQL, shared by every bot process, instead of DATABASE_PATH."),
    Variable("INDEX_BUSY_SECONDS", "10", "How long a write to the SQLite index waits for another process holding "
                                         "its lock before it counts as failed (at most 600; PostgreSQL ignores it)."),
    Variable("STORAGE_URL", "(local folder)", "s3://bucket/prefix keeps finished recordings in an S3-compatible "
                                              "object store (credentials through the AWS chain: AWS_ACCESS_KEY_ID, "
                                              "AWS_SECRET_ACCESS_KEY, ...); recording itself stays on local disk."),
    Variable("STORAGE_ENDPOINT", "(AWS)", "http(s)://host:port of an S3-compatible server other than AWS (MinIO, "
                                          "Garage, Ceph, R2, B2); needs STORAGE_URL."),
    Variable("STORAGE_REGION", "(AWS chain)", "Region to sign object store requests for (e.g. eu-central-1, auto); "
                                              "needs STORAGE_URL."),
    Variable("KEEP_LOCAL_COPY", "no", "With STORAGE_URL: whether a recording's local folder stays after its upload "
                                      "is verified (yes or no)."),
    Variable("STORAGE_RETRY_SECONDS", "300", "With STORAGE_URL: how long one object store request is retried through "
                                             "transient failures before it counts as failed; a failed upload is "
                                             "tried again later, with a growing wait (at most 3600)."),
    Variable("HTTP_HOST", "0.0.0.0", "Address the download web server listens on."),
    Variable("HTTP_PORT", "8080", "Port of the download web server (0 picks a free one)."),
    Variable("HTTP_MAX_CONNECTIONS", "256", "Download connections open at once (1 to 10000); more wait to be accepted, "
                                            "so downloads cannot take the descriptors voice needs."),
    Variable("PUBLIC_URL", "http://localhost:HTTP_PORT", "Base URL users reach the download server at, used in links."),
    Variable("RECORDER_ROLE", "(none)", "Role name or id allowed to start and stop recordings, besides Manage Server."),
    Variable("MAX_RECORDING_HOURS", "6", "A recording stops by itself after this many hours (at most 168)."),
    Variable("RETENTION_DAYS", "30", "Recordings and their links are deleted this many days after they end "
                                     "(at most 3650; 'forever' keeps them)."),
    Variable("MIN_FREE_DISK_MB", "1024", "Recording refuses to start, or stops, below this much free disk space "
                                         "(MiB, at most 10000000)."),
    Variable("EMPTY_CHANNEL_MINUTES", "3", "A recording stops by itself after its channel has no humans for this "
                                           "many minutes (at most 1440)."),
    Variable("DOWNLOAD_FORMAT", "wav", "Default download format of a server's recordings (wav, flac, ogg or mp3); "
                                      "each server may pick its own with /settings."),
    Variable("ATTACH_FILES", "yes", "Whether the stop summary attaches the recording's files (yes or no); each "
                                    "server may pick its own with /settings."),
    Variable("AUTORECORD_GRACE_SECONDS", "30", "An autorecord channel must stay empty this long before it records "
                                               "by itself again, so leaving and rejoining does not flap "
                                               "(at most 3600)."),
    Variable("LOG_FORMAT", "text", "Log lines as text, or json: one JSON object per line (time, level, logger, "
                                   "message, exception)."),
    Variable("SYNC_COMMANDS", "yes", "Whether the bot syncs its slash commands with Discord at start (yes or no); "
                                     "with several shard processes set no and run sync-commands once."),
    Variable("SHARD_COUNT", "(automatic)", "Total number of gateway shards."),
    Variable("SHARD_IDS", "(all)", "Comma-separated shard ids this process runs; needs SHARD_COUNT. A process "
                                   "refuses to start on a shard another live process sharing its index runs."),
    Variable("SHARD_LEASE_SECONDS", "60", "How long a process's lease on its shards lasts without renewal before "
                                          "another process may take them; renewed every third of it (6 to 3600). "
                                          "Give every process sharing an index the same value."),
    Variable("GUILD_READY_SECONDS", "2", "After the last server arrives from Discord, how long the bot waits for "
                                         "more before it is ready (0.1 to 60; discord.py's default is 2)."),
    Variable("DISCORD_API_BASE", "(Discord)", "REST API base URL; only for the loopback test Discord."),
    Variable("DISCORD_GATEWAY_URL", "(Discord)", "Gateway URL; only for the loopback test Discord."),
    Variable("DISCORD_CA_FILE", "(system CAs)", "Extra CA file to trust; only for the loopback test Discord."),
)

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Ten years; longer is RETENTION_DAYS=forever.
_MAX_RETENTION_DAYS = 3650
#: Far more gateway shards than any bot has been given.
_MAX_SHARDS = 65536


def help_text() -> str:
    """Return a table of every variable with its default and meaning, for ``--help``."""
    width = max(len(v.name) for v in VARIABLES)
    dwidth = max(len(v.default) for v in VARIABLES)
    lines = ["Configuration (environment variables, or a .env file in the working directory):", ""]
    for v in VARIABLES:
        lines.append(f"  {v.name:<{width}}  {v.default:<{dwidth}}  {v.meaning}")
    return "\n".join(lines)


def load_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``.env`` file: ``NAME=value`` lines, ``#`` comments, optional ``export``
    and matching quotes. A missing file is an empty mapping.

    Errors name the file and line number but never the line's content (it may be
    the token).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p.name}: cannot read ({type(exc).__name__})") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME_RE.match(name):
            raise ConfigError(f"{p.name} line {number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            # An unquoted value may carry a trailing comment, as in shell.
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def _int(name: str, text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}: must be {bound}, got {value}")
    return value


def _positive(name: str, text: str, high: float, *, low: float | None = None) -> float:
    """A number above 0 (and at least ``low``, if given) and at most ``high``: every
    duration has a ceiling, so no later date arithmetic can overflow."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"{name}: must be a positive number, got {text!r}")
    if value > high:
        raise ConfigError(f"{name}: must be at most {high:g}, got {text!r}")
    if low is not None and value < low:
        raise ConfigError(f"{name}: must be at least {low:g}, got {text!r}")
    return value


def _retention(name: str, text: str) -> float | None:
    """Days, or ``forever`` (None)."""
    if text.casefold() == "forever":
        return None
    return _positive(name, text, _MAX_RETENTION_DAYS)


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    value = text.casefold()
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {text!r}")
    return value


def _yes_no(name: str, text: str) -> bool:
    value = text.casefold()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    raise ConfigError(f"{name}: expected yes or no, got {text!r}")


def _url(name: str, text: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(text)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"{name}: expected a {'/'.join(schemes)} URL, got {text!r}")
    return text.rstrip("/")


def _database_url(name: str, text: str) -> str:
    """A ``postgresql://`` (or ``postgres://``) URL naming a database; never echoed, as it may hold a password."""
    expected = f"{name}: expected postgresql://user:password@host:port/database"
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is no number in range raises ValueError
    except ValueError:
        raise ConfigError(expected) from None
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/") or port == 0:
        raise ConfigError(expected)
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(expected)
    return text


def _storage(url: str, endpoint: str, region: str) -> StorageSettings | None:
    """The object store settings; None (the local folder) without STORAGE_URL."""
    if not url:
        for name, value in (("STORAGE_ENDPOINT", endpoint), ("STORAGE_REGION", region)):
            if value:
                raise ConfigError(f"{name}: needs STORAGE_URL to be set too")
        return None
    try:
        return StorageSettings.parse(url, endpoint or None, region or None)
    except StorageSettingError as exc:
        raise ConfigError(str(exc)) from None


def _check_token(text: str) -> str:
    if not text:
        raise ConfigError("DISCORD_TOKEN: missing (set it in the environment or in .env)")
    if any(c.isspace() for c in text) or not text.isprintable():
        raise ConfigError("DISCORD_TOKEN: contains whitespace or control characters")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. Build with :meth:`from_env`; ``repr`` masks the token."""

    discord_token: str = dataclasses.field(repr=False)
    recordings_dir: Path = Path("recordings")
    database_path: Path = Path("recordings") / "index.sqlite3"
    #: The PostgreSQL index (may hold a password: masked in repr); None: SQLite at database_path.
    database_url: str | None = dataclasses.field(default=None, repr=False)
    #: Seconds a write to the SQLite index waits out another process's lock (unused with PostgreSQL).
    index_busy_seconds: float = 10.0
    #: The object store finished recordings go to; None: they stay in recordings_dir.
    storage: StorageSettings | None = None
    #: Whether a recording's folder stays after its verified upload.
    keep_local_copy: bool = False
    #: Seconds one object store request keeps being retried (its :class:`~bot.objects.RetryPolicy` budget).
    storage_retry_seconds: float = 300.0
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    http_max_connections: int = 256
    public_url: str = "http://localhost:8080"
    recorder_role: str | None = None
    max_recording_hours: float = 6.0
    #: None: recordings are kept forever (``RETENTION_DAYS=forever``).
    retention_days: float | None = 30.0
    min_free_disk_mb: int = 1024
    empty_channel_minutes: float = 3.0
    #: The default of each server's download format (one of DOWNLOAD_FORMATS).
    download_format: str = "wav"
    attach_files: bool = True
    autorecord_grace_seconds: float = 30.0
    #: ``text`` or ``json`` (one object per line).
    log_format: str = "text"
    sync_commands: bool = True
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    #: Seconds a shard lease lasts unrenewed (see :mod:`bot.shard_claim`).
    shard_lease_seconds: float = 60.0
    guild_ready_seconds: float = 2.0
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    discord_ca_file: Path | None = None

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={'***' if f.name in ('discord_token', 'database_url') else repr(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({fields})"

    __str__ = __repr__

    @property
    def max_recording_seconds(self) -> float:
        """Maximum recording length in seconds."""
        return self.max_recording_hours * 3600.0

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv_path: str | os.PathLike[str] | None = ".env",
        *,
        need_token: bool = True,
    ) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``) over ``dotenv_path``.

        Pass ``dotenv_path=None`` to ignore any ``.env`` file, ``need_token=False``
        where nothing talks to Discord (the download front). Raises
        :class:`ConfigError` on the first missing or invalid value.
        """
        merged: dict[str, str] = dict(load_dotenv(dotenv_path)) if dotenv_path is not None else {}
        merged.update(os.environ if environ is None else environ)

        def get(name: str) -> str:
            return merged.get(name, "").strip()

        def opt(name: str, parse: Callable[[str, str], Any]) -> Any:
            text = get(name)
            return parse(name, text) if text else None

        token = _check_token(get("DISCORD_TOKEN")) if need_token else get("DISCORD_TOKEN")
        recordings_dir = Path(get("RECORDINGS_DIR") or "recordings")
        database_path = Path(get("DATABASE_PATH")) if get("DATABASE_PATH") else recordings_dir / "index.sqlite3"
        if database_path.exists() and database_path.is_dir():
            raise ConfigError(f"DATABASE_PATH: {str(database_path)!r} is a directory, expected a file")
        if recordings_dir.exists() and not recordings_dir.is_dir():
            raise ConfigError(f"RECORDINGS_DIR: {str(recordings_dir)!r} exists and is not a directory")
        storage = _storage(get("STORAGE_URL"), get("STORAGE_ENDPOINT"), get("STORAGE_REGION"))
        http_host = get("HTTP_HOST") or "0.0.0.0"
        http_port = _int("HTTP_PORT", get("HTTP_PORT") or "8080", 0, 65535)
        http_max_connections = _int("HTTP_MAX_CONNECTIONS", get("HTTP_MAX_CONNECTIONS") or "256", 1, 10_000)
        public_url = opt("PUBLIC_URL", lambda n, t: _url(n, t, ("http", "https")))
        if public_url is None:
            public_url = f"http://localhost:{http_port}"
        shard_count = opt("SHARD_COUNT", lambda n, t: _int(n, t, 1, _MAX_SHARDS))
        shard_ids = opt("SHARD_IDS", _shard_ids)
        if shard_ids is not None:
            if shard_count is None:
                raise ConfigError("SHARD_IDS: needs SHARD_COUNT to be set too")
            bad = [i for i in shard_ids if i >= shard_count]
            if bad:
                raise ConfigError(f"SHARD_IDS: shard {bad[0]} does not exist with SHARD_COUNT={shard_count}")
        ca_file = opt("DISCORD_CA_FILE", lambda n, t: Path(t))
        if ca_file is not None and not ca_file.is_file():
            raise ConfigError(f"DISCORD_CA_FILE: no such file {str(ca_file)!r}")
        return cls(
            discord_token=token,
            recordings_dir=recordings_dir,
            database_path=database_path,
            database_url=opt("DATABASE_URL", _database_url),
            index_busy_seconds=_positive("INDEX_BUSY_SECONDS", get("INDEX_BUSY_SECONDS") or "10", 600),
            storage=storage,
            keep_local_copy=_yes_no("KEEP_LOCAL_COPY", get("KEEP_LOCAL_COPY") or "no"),
            storage_retry_seconds=_positive("STORAGE_RETRY_SECONDS", get("STORAGE_RETRY_SECONDS") or "300", 3600),
            http_host=http_host,
            http_port=http_port,
            http_max_connections=http_max_connections,
            public_url=public_url,
            recorder_role=get("RECORDER_ROLE") or None,
            max_recording_hours=_positive("MAX_RECORDING_HOURS", get("MAX_RECORDING_HOURS") or "6", 168),
            retention_days=_retention("RETENTION_DAYS", get("RETENTION_DAYS") or "30"),
            min_free_disk_mb=_int("MIN_FREE_DISK_MB", get("MIN_FREE_DISK_MB") or "1024", 0, 10_000_000),
            empty_channel_minutes=_positive("EMPTY_CHANNEL_MINUTES", get("EMPTY_CHANNEL_MINUTES") or "3", 1440),
            download_format=_choice("DOWNLOAD_FORMAT", get("DOWNLOAD_FORMAT") or "wav", DOWNLOAD_FORMATS),
            attach_files=_yes_no("ATTACH_FILES", get("ATTACH_FILES") or "yes"),
            autorecord_grace_seconds=_positive("AUTORECORD_GRACE_SECONDS", get("AUTORECORD_GRACE_SECONDS") or "30",
                                               3600),
            log_format=_choice("LOG_FORMAT", get("LOG_FORMAT") or "text", ("text", "json")),
            sync_commands=_yes_no("SYNC_COMMANDS", get("SYNC_COMMANDS") or "yes"),
            shard_count=shard_count,
            shard_ids=shard_ids,
            # At least 6 s: renewed every third of it, a shorter lease would lapse at the
            # first slow answer of the index.
            shard_lease_seconds=_positive("SHARD_LEASE_SECONDS", get("SHARD_LEASE_SECONDS") or "60", 3600, low=6),
            # At least 0.1 s: with less, servers still on their way from the gateway were
            # left out of the start (discord.py gives up on a wait of 0 at once).
            guild_ready_seconds=_positive("GUILD_READY_SECONDS", get("GUILD_READY_SECONDS") or "2", 60, low=0.1),
            discord_api_base=opt("DISCORD_API_BASE", lambda n, t: _url(n, t, ("http", "https"))),
            discord_gateway_url=opt("DISCORD_GATEWAY_URL", lambda n, t: _url(n, t, ("ws", "wss"))),
            discord_ca_file=ca_file,
        )


def _shard_ids(name: str, text: str) -> tuple[int, ...]:
    ids = tuple(_int(name, part.strip(), 0) for part in text.split(","))
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{name}: lists a shard twice")
    return ids
