"""The shard layout of the multi-process test, which deploy/compose.yaml deploys too
(tests/test_compose.py holds them to it): per phase, SHARD_COUNT and each process's SHARD_IDS."""

from __future__ import annotations

__all__ = ["SHARDS"]

#: Before the reshard (as deployed) and after it.
SHARDS: dict[str, tuple[str, dict[str, str]]] = {
    "before": ("4", {"a": "0,1", "b": "2,3"}),
    "after": ("2", {"a": "0", "b": "1"}),
}
