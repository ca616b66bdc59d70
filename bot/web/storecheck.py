"""Whether the object store answers, for ``/healthz``.

The check is the start check's one cheap request (list at most one key under
the prefix: the endpoint answers, takes the credentials, has the bucket) with
a short timeout. Its answer is kept for a few seconds and checks asked for
meanwhile share the one under way, so however often ``/healthz`` is asked (a
load balancer per instance, an orchestrator, a scrape storm) the store sees
at most one request per interval from each process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

from bot.objects import BucketMissing, CredentialsRefused, StoreUnreachable

if TYPE_CHECKING:
    from bot.objects import ObjectStore

__all__ = ["OBJECT_STORE_CACHE_SECONDS", "OBJECT_STORE_TIMEOUT", "ObjectStoreCheck"]

_log = logging.getLogger(__name__)

#: Seconds the store may take to connect, and then to answer, before it counts as unreachable
#: (with the backstop at three times this, /healthz answers within the Docker HEALTHCHECK's 8 s).
OBJECT_STORE_TIMEOUT = 2.0
#: Seconds an answer is reused before the store is asked again.
OBJECT_STORE_CACHE_SECONDS = 5.0


class ObjectStoreCheck:
    """The readiness of one :class:`~bot.objects.ObjectStore`, checked at most once per ``cache_seconds``."""

    def __init__(self, objects: ObjectStore, *, timeout: float = OBJECT_STORE_TIMEOUT,
                 cache_seconds: float = OBJECT_STORE_CACHE_SECONDS) -> None:
        self._objects = objects
        self._timeout = timeout
        self._bound = 3 * timeout
        self._cache_seconds = cache_seconds
        self._checked_at = -math.inf
        self._problems: list[str] = []
        self._running: asyncio.Task[list[str]] | None = None

    async def problems(self) -> list[str]:
        """Why the object store cannot be used (empty: it answered), as of at most ``cache_seconds`` ago."""
        if time.monotonic() - self._checked_at < self._cache_seconds:
            return list(self._problems)
        if self._running is None:
            self._running = asyncio.create_task(self._check(), name="object-store-check")
        # Shielded: a caller that goes away must not cancel the check the others wait for.
        return list(await asyncio.shield(self._running))

    async def _check(self) -> list[str]:
        try:
            problems, detail = await self._ask()
            if problems != self._problems:  # logged when it changes, not at every check of an outage
                if problems:
                    _log.warning("object store check failed: %s", detail)
                else:
                    _log.info("object store answers again")
            self._problems, self._checked_at = problems, time.monotonic()
            return problems
        finally:
            self._running = None

    async def _ask(self) -> tuple[list[str], str]:
        """The public reasons (a few words) and the private detail for the log (it may name the endpoint)."""
        try:
            # The client gives up after the timeout to connect and as much to answer, so its thread ends
            # near this bound (the backstop for a lookup or a client build that hangs).
            await asyncio.wait_for(asyncio.to_thread(self._objects.check, timeout=self._timeout), self._bound)
        except StoreUnreachable as exc:
            return [f"object store: unreachable ({exc.reason})"], str(exc)
        except TimeoutError:
            reason = f"unreachable (no answer within {self._bound:g} s)"
            return [f"object store: {reason}"], reason
        except CredentialsRefused as exc:
            return ["object store: credentials refused"], str(exc)
        except BucketMissing as exc:
            return ["object store: bucket missing"], str(exc)
        except Exception as exc:  # whatever else the store answered, the process cannot use it now
            return [f"object store: {type(exc).__name__}"], str(exc)
        return [], ""
