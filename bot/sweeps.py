"""The hourly sweeps of a process: retention in a bot, the object cache in a download front."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["SWEEP_INTERVAL_SECONDS", "sweep_periodically"]

_log = logging.getLogger(__name__)

#: Retention counts in days: an hour late is soon enough, and costs the index nothing.
SWEEP_INTERVAL_SECONDS = 3600.0


async def sweep_periodically(sweep: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``sweep`` every :data:`SWEEP_INTERVAL_SECONDS` until cancelled; a failure is
    logged (``what`` names it) and the next sweep tries again."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
        try:
            await sweep()
        except Exception:  # retry at the next sweep
            _log.exception("%s failed", what)
