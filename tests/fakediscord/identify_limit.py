"""Discord's IDENTIFY rate limit, as the fake enforces it.

A bot may send ``max_concurrency`` IDENTIFYs per 5 seconds: one per rate-limit
bucket ``shard_id % max_concurrency`` (Discord's gateway docs, "Max Concurrency";
``/gateway/bot`` reports the figure in ``session_start_limit``). Discord answers an
IDENTIFY past the limit with op 9 Invalid Session (``d: false``), which is what the
fake does, so a client that breaks the rule sees it and a test can find it in
:attr:`IdentifyLimit.log`.
"""

from __future__ import annotations

import dataclasses
import time

__all__ = ["IDENTIFY_WINDOW_SECONDS", "IdentifyAttempt", "IdentifyLimit"]

#: One IDENTIFY per bucket in this many seconds.
IDENTIFY_WINDOW_SECONDS = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class IdentifyAttempt:
    """One IDENTIFY the gateway received (with a valid token and shard)."""

    #: time.monotonic() when it arrived.
    at: float
    shard_id: int
    shard_count: int
    bucket: int
    #: False: refused with op 9 for breaking the rate limit.
    accepted: bool


class IdentifyLimit:
    """The rate limit of one fake gateway and the log of every IDENTIFY it judged."""

    def __init__(self, max_concurrency: int = 16) -> None:
        #: Discord's ``max_concurrency`` (what ``/gateway/bot`` answers).
        self.max_concurrency = max_concurrency
        self.log: list[IdentifyAttempt] = []
        self._last_accepted: dict[int, float] = {}

    def admit(self, shard_id: int, shard_count: int) -> bool:
        """Judge an IDENTIFY arriving now: whether it keeps to the limit. Only accepted
        ones start a bucket's window (a refused one started no session)."""
        now = time.monotonic()
        bucket = shard_id % self.max_concurrency
        last = self._last_accepted.get(bucket)
        accepted = last is None or now - last >= IDENTIFY_WINDOW_SECONDS
        if accepted:
            self._last_accepted[bucket] = now
        self.log.append(IdentifyAttempt(now, shard_id, shard_count, bucket, accepted))
        return accepted
