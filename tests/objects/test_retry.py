"""The retry policy's waits: doubling from the first, capped, shortened by at
most half at random; a new sequence starts over."""

from __future__ import annotations

from bot.objects import RetryPolicy


def test_waits_double_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(budget=60.0, first_delay=0.5, max_delay=4.0)
    for _ in range(20):  # the jitter is random: every draw stays within its bounds
        next_delay = policy.delays()
        for nominal in (0.5, 1.0, 2.0, 4.0, 4.0, 4.0):
            assert nominal / 2 <= next_delay() <= nominal
