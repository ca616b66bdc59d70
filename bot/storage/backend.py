"""What :class:`bot.storage.RecordingStore` needs of the database under its index.

Two backends implement it: :class:`bot.storage.sqlite_index.SQLiteIndex` (a file
next to the recordings, the default) and
:class:`bot.storage.postgres_index.PostgresIndex` (a server every bot process
shares). The store writes its SQL once, with ``?`` placeholders and the syntax
both databases accept; a backend runs it in a transaction and says which column
orders speakers and notes as they were written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["IndexBackend", "IndexConflict", "IndexUnavailable", "Transaction"]

T = TypeVar("T")


class IndexUnavailable(Exception):
    """The index's database cannot be opened or reached now; ``str`` is one line
    that names where (without any password) and why."""


class IndexConflict(Exception):
    """A write broke one of the index's rules (a key taken, a recording gone)."""


class Transaction(Protocol):
    """One transaction of a backend."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders); the rows it returns, if any."""
        ...


class IndexBackend(Protocol):
    """A database holding the index, reached from any thread."""

    #: The column that orders a recording's speakers and notes as they were first written.
    insertion_order: str
    #: An SQL expression for the database's clock, in Unix seconds: one clock for every
    #: process sharing the index (shard leases, IDENTIFY slots), whatever their hosts' clocks say.
    clock_sql: str

    def run(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one transaction, committed when it returns and rolled back
        when it raises. Raises :class:`IndexConflict` for a broken rule and
        :class:`IndexUnavailable` when the database cannot be reached (a backend that
        lost its connection reconnects and runs ``work`` again once before that)."""
        ...

    def ping(self) -> bool:
        """Whether the database answers now (cheap: for health checks)."""
        ...

    def close(self) -> None:
        """Let go of the database."""
        ...
