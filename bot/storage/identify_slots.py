"""IDENTIFY slots in the index (table ``identify_slots``, schema migration 4): per
rate-limit bucket, the earliest moment of the database's clock at which the next
IDENTIFY of that bucket may be sent, shared by every process of the bot."""

from __future__ import annotations

from bot.storage.backend import IndexBackend

__all__ = ["IdentifySlots"]


class IdentifySlots:
    """Reserves IDENTIFY slots of the index's buckets."""

    def __init__(self, index: IndexBackend) -> None:
        self._index = index

    def reserve(self, bucket: int, spacing: float) -> float:
        """Take the next slot of ``bucket``, ``spacing`` seconds after the one before it;
        the seconds from now until it begins (0 or more).

        One statement: the row lock (PostgreSQL) or the write lock (SQLite) makes
        two processes reserving together get slots ``spacing`` apart.
        """
        clock = self._index.clock_sql
        rows = self._index.run(lambda tx: tx.execute(
            f"INSERT INTO identify_slots (bucket, next_at) VALUES (?, {clock} + ?) "
            f"ON CONFLICT (bucket) DO UPDATE SET next_at = "
            f"CASE WHEN identify_slots.next_at > {clock} THEN identify_slots.next_at ELSE {clock} END + ? "
            f"RETURNING next_at, {clock}", (bucket, spacing, spacing)))
        ((next_at, now),) = rows
        return max(0.0, next_at - spacing - now)
