"""Leases on gateway shards in the index (table ``shard_leases``, schema migration 4).

A process claims every shard it runs in one transaction and renews the claim while
it runs (see :mod:`bot.shard_claim`). A shard is free when nobody holds it, when its
lease was not renewed for ``ttl`` seconds of the database's clock (its holder died or
lost the database), or when the holder is ``owner`` itself: the same recordings
folder, i.e. this process restarted (the caller makes sure no other live process
uses that folder). A live lease made with another shard count refuses every claim:
a reshard restarts every process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bot.storage.backend import IndexBackend, Transaction

__all__ = ["Holder", "ShardConflict", "ShardLeases"]


@dataclasses.dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease: a recordings folder's name, and where its process runs."""

    owner: str
    host: str
    pid: int


@dataclasses.dataclass(frozen=True, slots=True)
class ShardConflict:
    """Why a claim was refused: ``shard`` is held by ``holder``, with ``shard_count``
    shards in all (different from the claim's when that is the reason)."""

    shard: int
    shard_count: int
    holder: Holder


class _Refused(Exception):
    """Rolls a claim's transaction back."""

    def __init__(self, conflict: ShardConflict) -> None:
        super().__init__(conflict)
        self.conflict = conflict


class ShardLeases:
    """The shard leases of one index."""

    def __init__(self, index: IndexBackend) -> None:
        self._index = index

    def claim(self, shards: Sequence[int], shard_count: int, holder: Holder, *, ttl: float) -> ShardConflict | None:
        """Take or renew the leases on ``shards`` for ``holder``, all or none; the first
        conflict (None: all taken). A lease lapses ``ttl`` seconds after its last renewal.
        Leases ``holder.owner`` held on other shards go."""
        clock = self._index.clock_sql

        def take(tx: Transaction) -> None:
            # Writes first: the guard row serializes claims, so two processes starting
            # together cannot both find the same shard free.
            tx.execute("UPDATE shard_lease_guard SET claims = claims + 1 WHERE id = 1")
            tx.execute("DELETE FROM shard_leases WHERE owner = ?", (holder.owner,))
            live = tx.execute(
                f"SELECT shard_id, shard_count, owner, host, pid FROM shard_leases WHERE heartbeat > {clock} - ? "
                "ORDER BY shard_id", (ttl,))
            wanted = set(shards)
            held = [row for row in live if row[0] in wanted] or [row for row in live if row[1] != shard_count]
            if held:
                shard, count, owner, host, pid = held[0]
                raise _Refused(ShardConflict(shard, count, Holder(owner, host, pid)))
            for shard in shards:
                tx.execute("DELETE FROM shard_leases WHERE shard_id = ?", (shard,))
                tx.execute(
                    f"INSERT INTO shard_leases (shard_id, shard_count, owner, host, pid, heartbeat) "
                    f"VALUES (?, ?, ?, ?, ?, {clock})", (shard, shard_count, holder.owner, holder.host, holder.pid))

        try:
            self._index.run(take)
        except _Refused as refused:
            return refused.conflict
        return None

    def release(self, owner: str) -> None:
        """Give up every lease ``owner`` holds (a clean shutdown)."""
        self._index.run(lambda tx: tx.execute("DELETE FROM shard_leases WHERE owner = ?", (owner,)))
