"""Durations, sizes and moments as people read them, in the Discord messages and on the download page.

One convention each, so a number reads the same wherever it is shown:

- Sizes count in powers of 1024 and say so with IEC symbols (``B``, ``KiB``,
  ``MiB``, ``GiB``): ``MIN_FREE_DISK_MB`` and Discord's upload limits are
  measured that way too.
- Durations in words (:func:`duration`) for sentences; the page's table and
  timeline axis use the compact clock form (:func:`clock`) of the same seconds.
- Moments (:func:`moment`) to the minute, in UTC, the one zone every member shares.

A leaf module: it imports nothing from the bot.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["clock", "days", "duration", "moment", "size"]


def days(count: float) -> str:
    """``1 day``, ``7 days``, ``0.5 days``: a retention as people say it."""
    return f"{count:g} day" if count == 1 else f"{count:g} days"


def duration(seconds: float) -> str:
    """``12.3 s``, ``3 s``, ``3 min 05 s``, ``1 h 02 min``.

    Under a minute to a tenth of a second (a whole number drops its ``.0``),
    under an hour to the second, beyond that to the minute.
    """
    tenths = round(seconds, 1)
    if tenths < 60:
        return f"{tenths:g} s"
    whole = round(seconds)
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, rounded to the second: the compact form for tables and axes."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size(num_bytes: int) -> str:
    """``512 B``, ``281.3 KiB``, ``1.5 MiB``, ``2.1 GiB`` (powers of 1024)."""
    if num_bytes < 1024:
        return f"{num_bytes} B"
    value = num_bytes / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def moment(when: datetime) -> str:
    """``2026-12-04 16:05 UTC``: a point in time (the store keeps every one in UTC)."""
    return when.strftime("%Y-%m-%d %H:%M UTC")
