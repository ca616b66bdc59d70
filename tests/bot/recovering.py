"""What a start-up does to a crashed recording when it cannot resume it, for the storage tests."""

from __future__ import annotations

from bot.recovery import close_interrupted, examine
from bot.storage import Recording, RecordingStore


def recover(store: RecordingStore) -> list[Recording]:
    """:func:`~bot.recovery.examine`, then close every recording it left open."""
    finished, left_open = examine(store)
    return finished + [close_interrupted(store, item) for item in left_open]
