"""Shard leases and IDENTIFY slots in the index (schema migration 4), on both backends:
the claim rules, and two processes claiming or reserving at the same moment."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bot.storage import RecordingStore
from bot.storage.shard_leases import Holder, ShardConflict
from tests.bot.conftest import IndexUnderTest

A = Holder("folder-a", "host-a", 11)
B = Holder("folder-b", "host-b", 22)
TTL = 60.0


def test_a_shard_is_free_when_unheld_lapsed_or_held_by_the_same_folder(tmp_path: Path, index: IndexUnderTest) -> None:
    with index.open(tmp_path / "a", tmp_path / "index.sqlite3") as store:
        leases = store.shard_leases
        assert leases.claim([0, 1], 4, A, ttl=TTL) is None
        assert leases.claim([1, 2], 4, B, ttl=TTL) == ShardConflict(1, 4, A)
        assert leases.claim([4, 5], 8, B, ttl=TTL) == ShardConflict(0, 4, A)  # a live claim of another count
        assert leases.claim([2, 3], 4, B, ttl=TTL) is None
        # the same folder again (a restart) takes its own back, and gives up those it no longer runs
        assert leases.claim([0], 4, Holder("folder-a", "host-a", 12), ttl=TTL) is None
        index.execute(store, "UPDATE shard_leases SET heartbeat = heartbeat - 120 WHERE owner = ?", (A.owner,))
        assert leases.claim([0, 1, 2, 3], 4, A, ttl=TTL) == ShardConflict(2, 4, B)  # B's are live
        leases.release(B.owner)
        assert leases.claim([0, 1, 2, 3], 4, B, ttl=TTL) is None  # A's lapsed, B's were given up


def test_claims_made_at_the_same_moment_never_both_win(tmp_path: Path, index: IndexUnderTest) -> None:
    """Two processes, disjoint shards but different counts: exactly one may run."""
    stores = [index.open(tmp_path / name, tmp_path / "index.sqlite3") for name in ("a", "b")]
    try:
        for _ in range(15):
            barrier = threading.Barrier(2)
            results: dict[str, ShardConflict | None] = {}

            def claim(store: RecordingStore, holder: Holder, shard: int, count: int) -> None:
                barrier.wait()
                results[holder.owner] = store.shard_leases.claim([shard], count, holder, ttl=TTL)

            threads = [threading.Thread(target=claim, args=(stores[0], A, 0, 4)),
                       threading.Thread(target=claim, args=(stores[1], B, 1, 8))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sum(conflict is None for conflict in results.values()) == 1, results
            stores[0].shard_leases.release(A.owner)
            stores[0].shard_leases.release(B.owner)
    finally:
        for store in stores:
            store.close()


def test_identify_slots_of_a_bucket_are_spaced_across_processes(tmp_path: Path, index: IndexUnderTest) -> None:
    spacing = 5.5
    stores = [index.open(tmp_path / name, tmp_path / "index.sqlite3") for name in ("a", "b")]
    slots: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def reserve(store: RecordingStore) -> None:
        barrier.wait()
        for _ in range(4):
            wait = store.identify_slots.reserve(0, spacing)
            with lock:
                slots.append(time.time() + wait)

    try:
        threads = [threading.Thread(target=reserve, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert stores[0].identify_slots.reserve(1, spacing) == 0.0  # another bucket need not wait
    finally:
        for store in stores:
            store.close()
    slots.sort()
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:])]
    assert len(slots) == 8 and min(gaps) > spacing - 0.25, gaps
