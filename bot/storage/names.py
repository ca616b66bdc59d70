"""File names for speaker tracks: the display name made safe, plus the user id."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["speaker_filename", "user_id_of_raw_track"]

_UNSAFE = re.compile(r"[^\w]+")
_RAW_TRACK = re.compile(r"([0-9]{1,20})\.wav\Z")
_MAX_NAME = 32


def speaker_filename(display_name: str, user_id: int, suffix: str = ".wav") -> str:
    """Return e.g. ``alice-1234567890.wav`` for ("Alice", 1234567890).

    Letters and digits of any script survive (lower-cased); every other run of
    characters becomes one ``_``; an empty result becomes ``speaker``. The user id
    keeps names unique and the result never contains a path separator or dot
    other than the suffix's.
    """
    name = unicodedata.normalize("NFKC", display_name).lower()
    name = _UNSAFE.sub("_", name).strip("_")[:_MAX_NAME].strip("_")
    return f"{name or 'speaker'}-{int(user_id)}{suffix}"


def user_id_of_raw_track(filename: str) -> int | None:
    """Return the user id of a track as the recording engine names it
    (``<user_id>.wav``), or None for any other file name."""
    m = _RAW_TRACK.match(filename)
    return int(m.group(1)) if m else None
