"""A list-backed sink for pipeline tests that check what reached the sink, not audio."""

from __future__ import annotations

import threading
from typing import Any

from sinks import EngineStats


class ListSink:
    """Keeps every written ``(user_id, packet)``; can be told to refuse writes."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, Any]] = []
        self.accept = True
        self.refused = 0
        self._lock = threading.Lock()

    def write(self, user_id: int, packet: Any) -> bool:
        with self._lock:
            if not self.accept:
                self.refused += 1
                return False
            self.packets.append((user_id, packet))
            return True

    def stats(self) -> EngineStats:
        """Packets written count as received, refused ones as received and dropped; the rest is 0."""
        with self._lock:
            written, refused = len(self.packets), self.refused
        received = written + refused
        return EngineStats(
            received=received, dropped=refused, drop_rate=refused / received if received else 0.0,
            decoded=0, lost=0, concealed=0, shed=0, duplicates=0, late=0, decode_errors=0, invalid=0,
            discarded=0, queue_depth=0, queue_high_water=0, worker_lag=0.0, worker_lag_max=0.0,
            write_samples=0, write_p50_us=None, write_p99_us=None, workers=0, bytes_written=0, users=0,
            per_user={}, failure=None, closed=False,
        )
