"""The index in a SQLite file: the default, nothing to set up.

One connection, shared by every thread under a lock; WAL, so the download
server's reads never wait for a recording's writes. Another process holding
the file's lock is waited out for up to ``busy_seconds`` (``INDEX_BUSY_SECONDS``,
ten by default), then :class:`sqlite3.OperationalError` is raised as it always was.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bot.storage.backend import IndexConflict, IndexUnavailable, Transaction
from bot.storage.migrations import SCHEMA_VERSION_TABLE, pending

__all__ = ["SQLiteIndex"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a write waits for another process's lock, unless the caller says otherwise.
DEFAULT_BUSY_SECONDS = 10.0


class _SQLiteTransaction:
    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()


class SQLiteIndex:
    """The index in the SQLite file at ``path``, migrated to the latest schema when opened;
    a write waits up to ``busy_seconds`` for another process holding the file's lock."""

    insertion_order = "rowid"
    #: Julian days to Unix seconds; 'now' holds still within one statement.
    clock_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path, *, busy_seconds: float = DEFAULT_BUSY_SECONDS) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=busy_seconds)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        """Apply the missing migrations in one transaction; IMMEDIATE takes the write
        lock first, so two processes opening one file migrate one after the other."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(SCHEMA_VERSION_TABLE)
                (current,) = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
                try:
                    steps = pending(current)
                except ValueError as exc:
                    raise IndexUnavailable(f"{self.path.name}: {exc}") from None
                for step in steps:
                    for statement in step.sqlite:
                        self._db.execute(statement)
                    self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (step.version,))
                    _log.info("index %s: schema migrated to version %d (%s)", self.path.name, step.version,
                              step.summary)
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def run(self, work: Callable[[Transaction], T]) -> T:
        """See :meth:`bot.storage.backend.IndexBackend.run`."""
        with self._lock:
            try:
                with self._db:
                    return work(_SQLiteTransaction(self._db))
            except sqlite3.IntegrityError as exc:
                raise IndexConflict(str(exc)) from exc

    def ping(self) -> bool:
        """See :meth:`bot.storage.backend.IndexBackend.ping`."""
        try:
            self.run(lambda tx: tx.execute("SELECT 1"))
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        """See :meth:`bot.storage.backend.IndexBackend.close`."""
        with self._lock:
            self._db.close()
