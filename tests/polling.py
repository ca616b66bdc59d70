"""Waiting on what a test observes: poll a condition until it holds, or fail naming it.

For state no event announces (files growing, rows in another process's database,
a client's caches): the loopback Discord's own changes have
:meth:`tests.fakediscord.server.FakeDiscord.wait_for`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str = "a condition", timeout: float = 10.0, *,
               poll: float = 0.02) -> T:
    """Call `condition` every `poll` s until it returns something truthy, and return that.

    Raises TimeoutError naming `what` once `timeout` s have passed without it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(poll)
