"""The one way durations and sizes are written, in messages and on the page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.units import clock, duration, moment, size


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0 s"), (3.0000000000000004, "3 s"), (5.4, "5.4 s"), (12.34, "12.3 s"), (59.96, "1 min 00 s"),
    (185.0, "3 min 05 s"), (3599.4, "59 min 59 s"), (3599.6, "1 h 00 min"), (3720.0, "1 h 02 min"),
    (5400.0, "1 h 30 min"), (6 * 3600.0, "6 h 00 min"),
])
def test_duration_in_words(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "0:00"), (1.5, "0:02"), (59.6, "1:00"), (185.0, "3:05"), (3720.0, "1:02:00"), (36000.0, "10:00:00"),
])
def test_clock(seconds: float, text: str) -> None:
    assert clock(seconds) == text


@pytest.mark.parametrize(("num_bytes", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (288_051, "281.3 KiB"), (1536 * 1024, "1.5 MiB"),
    (10 * 2**20, "10.0 MiB"), (5 * 2**30, "5.0 GiB"), (3 * 2**40, "3072.0 GiB"),
])
def test_size_in_powers_of_1024(num_bytes: int, text: str) -> None:
    assert size(num_bytes) == text


def test_moment_to_the_minute_in_utc() -> None:
    assert moment(datetime(2026, 12, 4, 16, 5, 59, tzinfo=UTC)) == "2026-12-04 16:05 UTC"
