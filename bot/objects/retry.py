"""Retrying the object store's transient failures with exponential backoff,
inside a bounded budget of time.

botocore's own retries are switched off (see :mod:`bot.objects.store`) so that
this is the only retry layer: a part of a multipart upload is retried on its
own, and the budget bounds how long one request may keep failing.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

from bot.objects.errors import StoreUnavailable

__all__ = ["RetryPolicy", "describe", "is_transient", "retrying"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Error codes S3 and its imitators answer for a request worth repeating as it was.
_TRANSIENT_CODES = frozenset({
    "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "ServiceUnavailable", "SlowDown",
    "Throttling", "ThrottlingException", "OperationAborted",
})


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to retry one request: waits start at ``first_delay``
    seconds and double up to ``max_delay`` (each shortened by up to half at random
    so that many uploads do not retry in step); no new attempt starts once
    ``budget`` seconds have passed since the first."""

    budget: float = 300.0
    first_delay: float = 0.5
    max_delay: float = 30.0

    def delays(self) -> Callable[[], float]:
        """A fresh sequence of waits, one per call."""
        state = {"next": self.first_delay}

        def next_delay() -> float:
            delay = state["next"]
            state["next"] = min(delay * 2, self.max_delay)
            return delay * random.uniform(0.5, 1.0)

        return next_delay


def is_transient(exc: BaseException) -> bool:
    """Whether repeating the request may succeed: no connection, a dropped one,
    a timeout, or a 5xx/throttling answer."""
    if isinstance(exc, SSLError):  # a certificate that does not fit stays so
        return False
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):  # refused, dropped, timed out
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return False


def describe(exc: BaseException) -> str:
    """A short reason for a log line (never a URL with a signature in it)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "error"))
    return type(exc).__name__


def retrying(operation: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """``operation()``, repeated after transient failures until ``policy.budget``
    is spent; then :class:`StoreUnavailable` naming ``what``. Other errors pass through."""
    started = time.monotonic()
    next_delay = policy.delays()
    attempts = 0
    while True:
        attempts += 1
        try:
            return operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next_delay()
            spent = time.monotonic() - started
            if spent + delay > policy.budget:
                raise StoreUnavailable(f"{what}: the object store kept failing ({describe(exc)}); "
                                       f"gave up after {attempts} attempts in {spent:.0f} s") from exc
            _log.info("%s: %s, retrying in %.1f s", what, describe(exc), delay)
            time.sleep(delay)
