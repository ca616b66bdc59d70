"""A list-backed sink for pipeline tests that check what reached the sink, not audio."""

from __future__ import annotations

import threading
from typing import Any


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

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"written": len(self.packets), "refused": self.refused}
