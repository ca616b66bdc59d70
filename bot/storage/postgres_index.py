"""The index on a PostgreSQL server, shared by every bot process (``DATABASE_URL``).

psycopg 3 in its synchronous form: the store is synchronous and the event loop
already reaches it through threads (:class:`bot.storage.AsyncRecordingStore`).
One connection per process, under a lock, in autocommit mode with an explicit
transaction per operation.

A connection the server dropped (a restart, a failover, a network cut) is
replaced and the operation run again; while the server stays away, operations
raise :class:`IndexUnavailable` at once and the next one tries to connect again,
so callers decide what waits (see :mod:`bot.session`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bot.storage.backend import IndexConflict, IndexUnavailable, Transaction
from bot.storage.migrations import SCHEMA_VERSION_TABLE, pending

__all__ = ["PostgresIndex", "describe_url"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: The advisory lock two processes starting together take in turn to migrate ("voicerec").
_MIGRATION_LOCK = 0x766F6963_65726563
_CONNECT_TIMEOUT_SECONDS = 5


def describe_url(url: str) -> str:
    """``url`` without its password: where the index is, fit for logs and errors."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class _PostgresTransaction:
    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        # The store's SQL holds no literal '?' or '%': its placeholders become psycopg's.
        cursor = self._conn.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description is not None else []


class PostgresIndex:
    """The index in the PostgreSQL database ``url`` names, migrated when opened.

    Raises :class:`IndexUnavailable` (one line, no password) when the server
    cannot be reached, refuses the credentials or has no such database.
    """

    insertion_order = "seq"
    #: The time when evaluated, so after any row lock the statement waited for (``now()``
    #: would be the transaction's start, stale by that wait).
    clock_sql = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def __init__(self, url: str) -> None:
        self._url = url
        self._password = conninfo_to_dict(url).get("password") or ""
        self.description = describe_url(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            self._migrate(self._connection())

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS,
                                         application_name="voice-recorder-bot")
        except psycopg.Error as exc:
            raise IndexUnavailable(f"cannot connect to {self.description}: {self._reason(exc)}") from None
        return self._conn

    def _reason(self, exc: BaseException) -> str:
        """libpq's message in one line: what failed last, without the password."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = first.rpartition(" failed: ")[2].removeprefix("FATAL:").strip() or first
        return reason.replace(self._password, "***") if self._password else reason

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the missing migrations in one transaction, under an advisory lock so
        processes starting together migrate one after the other."""
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(SCHEMA_VERSION_TABLE)
                row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
                assert row is not None
                for step in pending(row[0]):
                    for statement in step.postgres:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (step.version,))
                    _log.info("index %s: schema migrated to version %d (%s)", self.description, step.version,
                              step.summary)
        except ValueError as exc:
            conn.close()
            raise IndexUnavailable(f"{self.description}: {exc}") from None
        except psycopg.Error as exc:
            conn.close()
            raise IndexUnavailable(f"cannot set up the index in {self.description}: {self._reason(exc)}") from None

    def run(self, work: Callable[[Transaction], T]) -> T:
        """See :meth:`bot.storage.backend.IndexBackend.run`."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    with conn.transaction():
                        return work(_PostgresTransaction(conn))
                except psycopg.IntegrityError as exc:
                    raise IndexConflict(self._reason(exc)) from None
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    if not (conn.closed or conn.broken):
                        raise
                    conn.close()
                    _log.warning("lost the connection to the index %s (%s)%s", self.description,
                                 self._reason(exc), "; reconnecting" if attempt == 1 else "")
            raise IndexUnavailable(f"lost the connection to {self.description}")

    def ping(self) -> bool:
        """See :meth:`bot.storage.backend.IndexBackend.ping`."""
        try:
            self.run(lambda tx: tx.execute("SELECT 1"))
        except (IndexUnavailable, psycopg.Error):
            return False
        return True

    def close(self) -> None:
        """See :meth:`bot.storage.backend.IndexBackend.close`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
