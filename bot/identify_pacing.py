"""IDENTIFY pacing across every process sharing the index.

Discord lets a bot send ``max_concurrency`` IDENTIFYs per 5 seconds, one per
rate-limit bucket ``shard_id % max_concurrency``; an IDENTIFY past that is answered
with an invalid session. discord.py's default ``before_identify_hook`` sleeps 5 s
before every IDENTIFY but a process's first, and knows nothing of other processes.
Here each IDENTIFY first reserves its bucket's next slot in the index
(:class:`bot.storage.identify_slots.IdentifySlots`, on the database's clock) and
sleeps until it: processes starting together take turns per bucket, a restart waits
out its predecessor's last IDENTIFY, and shards of different buckets go at once.
Should the index not answer, discord.py's behaviour stands in, and the log says so.

The wait happens where discord.py calls the hook: after the websocket's HELLO, with
nothing reading the socket. Each process launches its shards one after another, so a
shard waits about 5.5 s for every process starting beside it in its bucket; past
discord.py's ``heartbeat_timeout`` (60 s, some ten processes starting at the same
moment with ``max_concurrency`` 1) discord.py would drop the waiting connection and
connect again. Start that many processes a few at a time.
"""

from __future__ import annotations

import asyncio
import logging

from bot.storage.identify_slots import IdentifySlots

__all__ = ["IDENTIFY_WINDOW_SECONDS", "IdentifyPacer"]

_log = logging.getLogger(__name__)

#: Discord's window: one IDENTIFY per bucket in it.
IDENTIFY_WINDOW_SECONDS = 5.0
#: Slots are this much further apart than the window: a slot is reserved before its
#: IDENTIFY is sent, and the process holding the earlier slot may send a little late.
_SLOT_MARGIN_SECONDS = 0.5


class IdentifyPacer:
    """Waits for each IDENTIFY's turn (the bot's ``before_identify_hook``)."""

    def __init__(self, slots: IdentifySlots) -> None:
        self._slots = slots
        #: Discord's ``max_concurrency``; set from ``/gateway/bot`` before the first IDENTIFY.
        self.max_concurrency = 1
        self._index_failed = False

    def bucket(self, shard_id: int | None) -> int:
        """The rate-limit bucket of ``shard_id`` (None: an unsharded client, shard 0)."""
        return (shard_id or 0) % self.max_concurrency

    async def wait_turn(self, shard_id: int | None, *, initial: bool) -> None:
        """Return when ``shard_id`` may IDENTIFY; ``initial`` marks a process's first."""
        bucket = self.bucket(shard_id)
        try:
            wait = await asyncio.to_thread(self._slots.reserve, bucket,
                                           IDENTIFY_WINDOW_SECONDS + _SLOT_MARGIN_SECONDS)
        except Exception as exc:  # any failure of the index: pace as discord.py would
            if not self._index_failed:
                _log.warning("IDENTIFY pacing: the index cannot be reached (%s); waiting %g s between this "
                             "process's IDENTIFYs only, as discord.py does", type(exc).__name__,
                             IDENTIFY_WINDOW_SECONDS)
            self._index_failed = True
            if not initial:
                await asyncio.sleep(IDENTIFY_WINDOW_SECONDS)
            return
        if self._index_failed:
            _log.info("IDENTIFY pacing: the index answers again")
            self._index_failed = False
        if wait > 0:
            _log.info("shard %s waits %.1f s for its IDENTIFY turn (bucket %d of %d)", shard_id, wait, bucket,
                      self.max_concurrency)
            await asyncio.sleep(wait)
